// Sessions under gVisor (--runtime runsc): the session container gets a kernel of its own, and
// everything a session does works there: the agent's repository, a detached job and its exit
// status, the default egress (proxy and forwarder stay on runc, in the session's namespace),
// list, resume and finish. The engine must offer runsc (.ci/run registers it).
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { docker } from '../scripts/lib/engine/docker.ts';
import { shellEngine } from '../scripts/lib/engine/engine.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import type { SessionState } from '../scripts/lib/session/store.ts';
import { runScript, SESSION_IMAGE, sessionTestImage, testEgressImage, type ScriptResult } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';

function start(repo: TestRepo, args: string[], env: Record<string, string> = {}): Promise<ScriptResult> {
  return runScript('start.ts', args, { cwd: repo.root, env: { ...repo.env, ...env } });
}

function pathsOf(repo: TestRepo, name: string) {
  return sessionPaths({ root: repo.root, commonDir: path.join(repo.root, '.git') }, name);
}

async function state(repo: TestRepo, name: string): Promise<SessionState> {
  return JSON.parse(await fs.readFile(pathsOf(repo, name).stateFile, 'utf8')) as SessionState;
}

async function runtimeOf(container: string): Promise<string> {
  return (await docker(['inspect', '--format', '{{.HostConfig.Runtime}}', container])).stdout.trim();
}

const gvisor = suite('sessions under gVisor (--runtime runsc)');

gvisor.before(async () => {
  const offered = await shellEngine.runtimes();
  assert.ok(offered.includes('runsc'), `the engine offers ${offered.join(', ')}: register runsc (see docs/security.md), as .ci/run does`);
  await Promise.all([sessionTestImage(), testEgressImage()]);
});

gvisor('a job runs under gVisor with the default egress; its commit, exit status and runtime come back; resume keeps the runtime', async () => {
  const repo = await makeRepo();
  const script = ['uname -r > kernel.txt', 'git add kernel.txt', 'git -c user.name=Agent -c user.email=agent@example.invalid commit -q -m "under gvisor"'].join(
    ' && ',
  );
  // The proxy answers through the forwarder (squid's 403 for a name no allowlist holds). Asked a
  // few times (up to 60, for a machine under load): a read from bash's /dev/tcp under gVisor can fail with EAGAIN (curl polls; head does not).
  const probe = `for i in $(seq 60); do r=$(exec 3<>/dev/tcp/127.0.0.1/3128 && printf 'CONNECT denied.invalid:443 HTTP/1.1\\r\\n\\r\\n' >&3 && timeout 5 head -n 1 <&3 2>/dev/null); case "$r" in HTTP*) break;; esac; sleep 0.3; done; echo "proxy: $r"; exit 7`;
  const started = await start(repo, [
    'gv',
    '--container',
    '--detach',
    '--runtime',
    'runsc',
    '--image',
    SESSION_IMAGE,
    '--',
    'bash',
    '-c',
    `${script} && ${probe}`,
  ]);
  assert.is(started.exitCode, 0, started.stderr);
  const p = pathsOf(repo, 'gv');
  assert.is(await runtimeOf(p.container), 'runsc');
  // The egress pieces stay on the engine's default runtime, in the session's network namespace.
  assert.is.not(await runtimeOf(p.forwarder), 'runsc');
  assert.is((await state(repo, 'gv')).runtime, 'runsc');
  const follow = await runScript('logs.ts', ['gv', '--follow'], { cwd: repo.root, env: repo.env });
  assert.is(follow.exitCode, 7, `${follow.stdout}\n${follow.stderr}`);
  assert.match(follow.stdout, /proxy: HTTP\/1\.[01] 403/);
  // gVisor's kernel answers uname, not the host's.
  const kernel = (await repo.git(['show', 'para/gv:kernel.txt'])).trim();
  assert.ok(kernel.length > 0);
  assert.is.not(kernel, os.release(), 'the session saw the host kernel');
  const listed = JSON.parse((await runScript('list.ts', ['--json'], { cwd: repo.root, env: repo.env })).stdout) as {
    sessions: Array<{ name: string; runtime: string | null }>;
  };
  assert.is(listed.sessions.find((s) => s.name === 'gv')?.runtime, 'runsc');
  const table = await runScript('list.ts', [], { cwd: repo.root, env: repo.env });
  assert.match(table.stdout, /gv\s+active\s+\S+ \(runsc\)/);
  // A resume keeps the runtime; asking for another is refused.
  const other = await start(repo, ['gv', '--container', '--detach', '--runtime', 'runc', '--', 'true']);
  assert.is(other.exitCode, 2, other.stderr);
  assert.match(other.stderr, 'keeps its runtime');
  const again = await start(repo, ['gv', '--container', '--detach', '--', 'true']);
  assert.is(again.exitCode, 0, again.stderr);
  assert.is(await runtimeOf(p.container), 'runsc');
  const finished = await runScript('finish.ts', ['gv', '-m', 'done'], { cwd: repo.root, env: repo.env });
  assert.is(finished.exitCode, 0, finished.stderr);
  assert.is(await repo.git(['log', '-1', '--format=%s', 'para/gv~0']), 'under gvisor');
});

gvisor('a runtime the engine does not offer is refused with how to add it, and nothing is made', async () => {
  const repo = await makeRepo();
  const result = await start(repo, ['nort', '--container', '--detach', '--runtime', 'no-such-runtime', '--image', SESSION_IMAGE, '--', 'true']);
  assert.is.not(result.exitCode, 0);
  assert.match(result.stderr, 'has no runtime no-such-runtime');
  assert.match(result.stderr, 'daemon.json');
  assert.is(await repo.git(['branch', '--list', 'para/*']), '');
  assert.is(await fs.pathExists(pathsOf(repo, 'nort').stateFile), false);
  const bad = await start(repo, ['nort', '--container', '--detach', '--runtime', 'bad name', '--', 'true']);
  assert.is(bad.exitCode, 2, bad.stderr);
});

gvisor('under gVisor: no way out but the proxy, links stay links, and cancel loses nothing', async () => {
  const repo = await makeRepo();
  const victim = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'para-test-victim-')), 'victim.txt');
  await fs.writeFile(victim, 'the host file\n');
  const script = [
    // No route and no name service: a direct connection fails before anything is sent.
    "if timeout 5 bash -c 'exec 3<>/dev/tcp/10.255.255.1/443' 2>/dev/null; then echo direct-connected; fi",
    'if getent hosts example.com >/dev/null 2>&1; then echo dns-answered; fi',
    `ln -s ${victim} victim-link`,
    'ln -s /etc etc-link',
    'echo unsaved > wip.txt',
    'echo probed',
  ].join('; ');
  const started = await start(repo, ['gvc', '--container', '--detach', '--runtime', 'runsc', '--image', SESSION_IMAGE, '--', 'bash', '-c', script]);
  assert.is(started.exitCode, 0, started.stderr);
  const follow = await runScript('logs.ts', ['gvc', '--follow'], { cwd: repo.root, env: repo.env });
  assert.is(follow.exitCode, 0, follow.stderr);
  assert.match(follow.stdout, 'probed');
  assert.not.match(follow.stdout, 'direct-connected');
  assert.not.match(follow.stdout, 'dns-answered');
  const cancelled = await runScript('cancel.ts', ['gvc', '--json'], { cwd: repo.root, env: repo.env });
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
  const archived = (JSON.parse(cancelled.stdout) as { archivedBranch: string }).archivedBranch;
  assert.is(await repo.git(['show', `${archived}:wip.txt`]), 'unsaved');
  // The links come back as links (mode 120000), never as what they point at.
  const tree = await repo.git(['ls-tree', archived, 'victim-link', 'etc-link']);
  assert.match(tree, /^120000 blob \S+\tetc-link$/m);
  assert.match(tree, /^120000 blob \S+\tvictim-link$/m);
  assert.is(await fs.readFile(victim, 'utf8'), 'the host file\n');
});

gvisor.run();
