// Sessions on another engine: a second Docker engine of the test's own (its own socket, data root,
// exec root and pid file), reached only through a docker context or DOCKER_HOST, with the images
// moved there by docker save | docker load. It sees none of this machine's files as the session's:
// no session container may have a bind mount, and the work must still come back.
import { execa } from 'execa';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { EGRESS_IMAGE } from './support/resources.ts';
import { CLAUDE_IMAGE, FAKE_TOKEN, scriptCommand, SESSION_IMAGE, sessionTestImage, testEgressImage } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { BROKER_NAME, onCleanup, RUN_ID, TEST_LABEL } from './support/resources.ts';
import { privateEngine, waitUntil, type PrivateEngine } from './support/engine.ts';

let engine: PrivateEngine;
const CONTEXT = `para-test-remote-${RUN_ID}`;
const root = process.getuid?.() === 0;

/** docker on the test's own engine. */
function remote(args: string[]) {
  return engine.docker(args);
}

/** A para script in `repo`, its engine chosen by `env` (a context, DOCKER_HOST, or neither: the shell's default). */
function para(repo: TestRepo, script: string, args: string[], env: Record<string, string | undefined> = {}) {
  const [command, ...entry] = scriptCommand(script);
  return execa(command, [...entry, ...args], {
    cwd: repo.root,
    env: { ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`, DOCKER_CONTEXT: undefined, DOCKER_HOST: undefined, ...env },
    reject: false,
    stdin: 'ignore',
    timeout: 3 * 60_000,
  });
}

/** The bind mounts of every container on the second engine labelled for `repo`. */
async function bindMounts(repo: TestRepo): Promise<string[]> {
  const ids = (await remote(['ps', '-aq', '--filter', `label=dev.para.repo=${repo.root}`])).stdout.split('\n').filter(Boolean);
  assert.ok(ids.length > 0, 'no session container on the second engine');
  const mounts = (await remote(['inspect', '--format', '{{json .Mounts}}', ...ids])).stdout;
  return [...mounts.matchAll(/"Type":"bind","Source":"([^"]+)"/g)].map((m) => m[1]);
}

const onRemote = suite('sessions on a second engine, reached through a docker context or DOCKER_HOST');

onRemote.before(async () => {
  if (!root) return;
  await Promise.all([sessionTestImage(), testEgressImage()]);
  engine = await privateEngine();
  onCleanup(() => execa('docker', ['context', 'rm', '--force', CONTEXT], { reject: false }));
  // The credential-free image too: the broker's sessions run from it (docker load keeps no image's parent, so para finds it by its layers).
  const moved = await execa(
    'sh',
    ['-c', 'docker save "$1" "$2" "$3" | DOCKER_HOST="$4" docker load -q', 'sh', SESSION_IMAGE, EGRESS_IMAGE, CLAUDE_IMAGE, engine.host],
    {
      reject: false,
    },
  );
  assert.is(moved.exitCode, 0, moved.stderr);
  const made = await execa('docker', ['context', 'create', CONTEXT, '--docker', `host=${engine.host}`], { reject: false });
  assert.is(made.exitCode, 0, made.stderr);
});

onRemote('by name through --context: no bind mount, commits come back with sync, uncommitted files with sync --files, finish keeps all', async () => {
  if (!root) return;
  const repo = await makeRepo();
  const body = 'echo from the remote engine > r.txt && git add r.txt && git commit -qm remote && echo not yet committed > u.txt && echo done';
  const started = await para(repo, 'start.ts', ['far', '--container', '--detach', '--context', CONTEXT, '--image', SESSION_IMAGE, '--', 'sh', '-c', body]);
  assert.is(started.exitCode, 0, started.stderr);
  assert.match(started.stderr, `files in its volume on docker context ${CONTEXT}`);
  assert.not.ok(await fs.pathExists(path.join(repo.root, '.para', 'worktrees', 'far')), 'a host folder was made for a remote session');
  // Later commands find the engine by themselves, from a shell that names none.
  const logs = await para(repo, 'logs.ts', ['far', '-f']);
  assert.is(logs.exitCode, 0, logs.stderr);
  assert.match(logs.stdout, 'done');
  assert.equal(await bindMounts(repo), [], 'a session container on the remote engine has a bind mount');
  const synced = await para(repo, 'sync.ts', ['far', '--files', '--json']);
  assert.is(synced.exitCode, 0, synced.stderr);
  const result = JSON.parse(synced.stdout) as { filesRef: string };
  assert.is(await repo.git(['log', '-1', '--format=%s', 'para/far']), 'remote');
  assert.is(await repo.git(['show', `${result.filesRef}:u.txt`]), 'not yet committed');
  // diff reads the uncommitted files inside the container, and leaves no ref behind.
  const refsBefore = await repo.git(['for-each-ref', '--format=%(refname)']);
  const diff = await para(repo, 'diff.ts', ['far', '--json']);
  assert.is(diff.exitCode, 0, diff.stderr);
  const view = JSON.parse(diff.stdout) as { uncommitted: string; files: Array<{ path: string }>; patch: string };
  assert.is(view.uncommitted, 'included');
  assert.equal(
    view.files.map((f) => f.path),
    ['r.txt', 'u.txt'],
  );
  assert.match(view.patch, '+not yet committed');
  assert.is(await repo.git(['for-each-ref', '--format=%(refname)']), refsBefore);
  const log = JSON.parse((await para(repo, 'log.ts', ['far', '--json'])).stdout) as { commits: Array<{ subject: string }> };
  assert.equal(
    log.commits.map((c) => c.subject),
    ['remote'],
  );
  const listed = JSON.parse((await para(repo, 'list.ts', ['--json'])).stdout) as {
    sessions: Array<{ name: string; engine: { context: string; remote: boolean }; containerState: string; activity: { state: string } }>;
  };
  assert.equal(listed.sessions[0].engine, { context: CONTEXT, host: null, remote: true });
  assert.is(listed.sessions[0].containerState, 'running');
  assert.is(listed.sessions[0].activity.state, 'done', "its job exited 0 (read from the remote container's status line)");
  // merge brings the commit over the bundle and into main; the uncommitted file is named, not taken.
  const merged = await para(repo, 'merge.ts', ['far', '--json']);
  assert.is(merged.exitCode, 0, merged.stderr);
  const outcome = JSON.parse(merged.stdout) as { outcome: string; warnings: string[] };
  assert.is(outcome.outcome, 'merged');
  assert.match(outcome.warnings.join('\n'), 'uncommitted files');
  assert.is(await repo.git(['show', 'main:r.txt']), 'from the remote engine');
  const doctor = JSON.parse((await para(repo, 'doctor.ts', ['--json', '--image', SESSION_IMAGE])).stdout) as {
    checks: Array<{ id: string; status: string; message: string }>;
  };
  const engines = doctor.checks.find((c) => c.id === 'engines')!;
  assert.is(engines.status, 'ok', engines.message);
  assert.match(engines.message, CONTEXT);
  const finished = await para(repo, 'finish.ts', ['far', '-m', 'the rest']);
  assert.is(finished.exitCode, 0, finished.stderr);
  assert.is(await repo.git(['show', 'para/far:u.txt']), 'not yet committed');
  assert.is(await repo.git(['show', 'para/far:r.txt']), 'from the remote engine');
  assert.is((await remote(['ps', '-aq', '--filter', `label=dev.para.repo=${repo.root}`])).stdout.trim(), '', 'finish left a container');
});

onRemote(
  'the credential broker lives on the remote engine: the session holds a placeholder and reaches it; killed, the next start brings it back',
  async () => {
    if (!root) return;
    const repo = await makeRepo();
    const started = await para(repo, 'start.ts', ['brk', '--container', '--detach', '--context', CONTEXT, '--image', SESSION_IMAGE, '--', 'sleep', '600']);
    assert.is(started.exitCode, 0, started.stderr);
    const brokers = (
      await remote([
        'ps',
        '-q',
        '--filter',
        'label=dev.para.role=broker',
        '--filter',
        `label=dev.para.broker-image=${SESSION_IMAGE}`,
        '--filter',
        `label=${TEST_LABEL}=${RUN_ID}`,
      ])
    ).stdout
      .split('\n')
      .filter(Boolean);
    assert.is(brokers.length, 1, 'no broker (or more than one) on the remote engine');
    const here = await execa('docker', ['ps', '-aq', '--filter', 'label=dev.para.role=broker', '--filter', `name=^${BROKER_NAME}`], { reject: false });
    assert.is(here.stdout.trim(), '', 'a broker was made on the local engine for a remote session');
    const session = sessionPaths({ root: repo.root, commonDir: '' }, 'brk').container;
    const inSession = async (script: string) => {
      const r = await engine.docker(['exec', '-u', 'para', session, 'bash', '-c', script]);
      return { stdout: `${r.stdout}${r.stderr}`, exitCode: r.exitCode };
    };
    const status = await inSession('claude auth status --json');
    assert.match(status.stdout, '"loggedIn": true');
    const held = await inSession(`grep -rl '${FAKE_TOKEN}' / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; true`);
    assert.is(held.stdout.trim(), '', 'the remote session holds the login');
    // The broker answers through the session's forwarder (squid's 403 for a path it never forwards).
    const probe =
      "exec 3<>/dev/tcp/127.0.0.1/3129 && printf 'GET /para-probe HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n' >&3 && timeout 5 head -n 1 <&3";
    assert.match((await inSession(probe)).stdout, /^HTTP\/1\.[01] 403/);
    await remote(['kill', brokers[0]]);
    const down = await inSession('timeout 60 claude -p "say ok"');
    assert.is.not(down.exitCode, 0);
    assert.match(down.stdout, 'the credential broker is not running');
    const again = await para(repo, 'start.ts', ['brk2', '--container', '--detach', '--context', CONTEXT, '--image', SESSION_IMAGE, '--', 'sleep', '600']);
    assert.is(again.exitCode, 0, again.stderr);
    assert.match((await inSession(probe)).stdout, /^HTTP\/1\.[01] 403/);
    for (const name of ['brk', 'brk2']) assert.is((await para(repo, 'cancel.ts', [name, '--force'])).exitCode, 0);
  },
);

onRemote('by prompt through DOCKER_HOST, then cancel keeps the work and clean removes what a lost state left', async () => {
  if (!root) return;
  const repo = await makeRepo();
  const host = engine.host;
  const started = await para(
    repo,
    'start.ts',
    ['implement the remote thing', '--container', '--detach', '--egress', 'none', '--image', SESSION_IMAGE, '--json'],
    { DOCKER_HOST: host },
  );
  assert.is(started.exitCode, 0, started.stderr);
  const session = JSON.parse(started.stdout) as { name: string; engine: { host: string; remote: boolean } };
  assert.equal(session.engine, { context: null, host, remote: true });
  assert.equal(await bindMounts(repo), []);
  // The agent commits, then leaves a file uncommitted; cancel keeps both.
  const container = sessionPaths({ root: repo.root, commonDir: '' }, session.name).container;
  const work = await remote([
    'exec',
    '-u',
    'para',
    '-w',
    '/para/session/work',
    container,
    'sh',
    '-c',
    'echo a > a.txt && git add a.txt && git commit -qm agent && echo b > b.txt',
  ]);
  assert.is(work.exitCode, 0, work.stderr);
  const cancelled = await para(repo, 'cancel.ts', [session.name, '--force', '--json']);
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
  const archived = (JSON.parse(cancelled.stdout) as { archivedBranch: string }).archivedBranch;
  assert.is(await repo.git(['show', `${archived}:b.txt`]), 'b');
  assert.is(await repo.git(['log', '-1', '--format=%s', `${archived}~1`]), 'agent');

  // A session whose state file is lost: its container and volume on the remote engine are orphans.
  const lost = await para(repo, 'start.ts', ['lost', '--container', '--detach', '--egress', 'none', '--image', SESSION_IMAGE, '--', 'true'], {
    DOCKER_HOST: host,
  });
  assert.is(lost.exitCode, 0, lost.stderr);
  await fs.rm(path.join(repo.root, '.git', 'para', 'sessions', 'lost.json'));
  // The engine is named by nothing now but the shell: clean is run the way a user would, against it.
  const cleaned = await para(repo, 'clean.ts', [], { DOCKER_HOST: host });
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  assert.is((await remote(['ps', '-aq', '--filter', `label=dev.para.repo=${repo.root}`])).stdout.trim(), '');
  assert.is((await remote(['volume', 'ls', '-q', '--filter', `label=dev.para.repo=${repo.root}`])).stdout.trim(), '');
});

onRemote('under gVisor on the remote engine (--runtime runsc): default egress, the job, its commit, list, resume and finish', async () => {
  if (!root) return;
  const offered = (await remote(['info', '--format', '{{json .Runtimes}}'])).stdout;
  assert.match(offered, '"runsc"', 'the second engine offers no runsc: .ci/run installs it, and privateEngine() registers it');
  const repo = await makeRepo();
  // The job proves its kernel is not the host's and that the proxy answers through the forwarder.
  const probe = `for i in $(seq 20); do r=$(exec 3<>/dev/tcp/127.0.0.1/3128 && printf 'CONNECT denied.invalid:443 HTTP/1.1\\r\\n\\r\\n' >&3 && timeout 5 head -n 1 <&3 2>/dev/null); case "$r" in HTTP*) break;; esac; sleep 0.3; done; echo "proxy: $r"`;
  const body = `uname -r > kernel.txt && git add kernel.txt && git commit -qm gvisor-remote && ${probe}`;
  const ctx = ['--container', '--detach', '--context', CONTEXT, '--runtime', 'runsc', '--image', SESSION_IMAGE];
  const started = await para(repo, 'start.ts', ['gvr', ...ctx, '--', 'bash', '-c', body]);
  assert.is(started.exitCode, 0, started.stderr);
  const paths = sessionPaths({ root: repo.root, commonDir: '' }, 'gvr');
  assert.is((await remote(['inspect', '--format', '{{.HostConfig.Runtime}}', paths.container])).stdout.trim(), 'runsc');
  assert.is.not((await remote(['inspect', '--format', '{{.HostConfig.Runtime}}', paths.forwarder])).stdout.trim(), 'runsc');
  const logs = await para(repo, 'logs.ts', ['gvr', '-f']);
  assert.is(logs.exitCode, 0, logs.stderr);
  assert.match(logs.stdout, /proxy: HTTP\/1\.[01] 403/);
  assert.equal(await bindMounts(repo), [], 'a session container on the remote engine has a bind mount');
  const kernel = (await repo.git(['show', 'para/gvr:kernel.txt'])).trim();
  assert.ok(kernel.length > 0);
  assert.is.not(kernel, os.release(), 'the remote session saw the host kernel');
  const listed = JSON.parse((await para(repo, 'list.ts', ['--json'])).stdout) as { sessions: Array<{ name: string; runtime: string | null }> };
  assert.is(listed.sessions.find((x) => x.name === 'gvr')?.runtime, 'runsc');
  const resumed = await para(repo, 'start.ts', ['gvr', '--container', '--detach', '--', 'true']);
  assert.is(resumed.exitCode, 0, resumed.stderr);
  assert.is((await remote(['inspect', '--format', '{{.HostConfig.Runtime}}', paths.container])).stdout.trim(), 'runsc');
  const finished = await para(repo, 'finish.ts', ['gvr', '-m', 'done']);
  assert.is(finished.exitCode, 0, finished.stderr);
  assert.is(await repo.git(['log', '-1', '--format=%s', 'para/gvr']), 'gvisor-remote');
  assert.is((await remote(['ps', '-aq', '--filter', `label=dev.para.repo=${repo.root}`])).stdout.trim(), '', 'finish left a container');
});

onRemote('the engine killed in the middle of a start: nothing half-made is left once it is back', async () => {
  if (!root) return;
  const repo = await makeRepo();
  const [command, ...entry] = scriptCommand('start.ts');
  const child = execa(command, [...entry, 'killed', '--container', '--detach', '--context', CONTEXT, '--image', SESSION_IMAGE, '--', 'true'], {
    cwd: repo.root,
    env: { ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`, DOCKER_CONTEXT: undefined, DOCKER_HOST: undefined },
    reject: false,
    stdin: 'ignore',
  });
  // The moment the session's container exists on that engine, the engine dies.
  await waitUntil(
    'the session container to exist',
    async () => (await remote(['ps', '-aq', '--filter', 'name=para-killed-'])).stdout.trim() !== '' || child.exitCode !== null,
    60_000,
  );
  await engine.stop('SIGKILL');
  const ended = await child;
  await engine.start();
  assert.is.not(ended.exitCode, 0, 'the start reported success with its engine gone');
  assert.is((await repo.git(['branch', '--list', 'para/*'])).trim(), '', 'the branch was left');
  const cleaned = await para(repo, 'clean.ts', [], { DOCKER_CONTEXT: CONTEXT });
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  assert.is((await remote(['ps', '-aq', '--filter', `label=dev.para.repo=${repo.root}`])).stdout.trim(), '', 'a container of the killed start is left');
  assert.is((await remote(['volume', 'ls', '-q', '--filter', `label=dev.para.repo=${repo.root}`])).stdout.trim(), '');
  assert.equal(await fs.readdir(path.join(repo.root, '.git', 'para', 'sessions')), []);
});

onRemote('attacks on the shared mirror and the seed: a link where the work folder was, a nested repository, escape codes; all held', async () => {
  if (!root) return;
  const repo = await makeRepo();
  const ctx = ['--container', '--detach', '--context', CONTEXT, '--egress', 'none', '--image', SESSION_IMAGE];
  const a = await para(repo, 'start.ts', ['mira', ...ctx, '--', 'sleep', '300']);
  assert.is(a.exitCode, 0, a.stderr);
  const container = sessionPaths({ root: repo.root, commonDir: '' }, 'mira').container;
  const agent = (command: string) => remote(['exec', '-u', 'para', '-w', '/para/session/work', container, 'bash', '-c', command]);
  // The mirror is not the agent's to write, and a link where the work folder was is never followed by root.
  assert.is.not((await agent('touch /para/mirror/x 2>&1')).exitCode, 0);
  assert.is((await agent('cd /para/session && mv work work.real && ln -s /para/mirror work && echo linked')).stdout.trim(), 'linked');
  await remote(['stop', '--time', '0', container]);
  const resumed = await para(repo, 'start.ts', ['mira', ...ctx, '--', 'sleep', '300']);
  assert.is(resumed.exitCode, 0, resumed.stderr);
  assert.is((await remote(['exec', container, 'stat', '-c', '%U', '/para/mirror'])).stdout.trim(), 'root', 'root gave the mirror to the agent');
  assert.is.not((await agent('touch /para/mirror/x 2>&1')).exitCode, 0);
  // A second session of the repository gets the host's files, whatever the first one did.
  const b = await para(repo, 'start.ts', ['mirb', ...ctx, '--', 'cat', 'README.md']);
  assert.is(b.exitCode, 0, b.stderr);
  assert.is((await para(repo, 'logs.ts', ['mirb', '-f'])).stdout.trim(), '# test repository');
  // A nested repository with uncommitted work: left out of the commit, said, and kept in the tar.
  const nested = await remote([
    'exec',
    '-u',
    'para',
    sessionPaths({ root: repo.root, commonDir: '' }, 'mirb').container,
    'sh',
    '-c',
    "cd /para/session/work && mkdir -p vendor/lib && cd vendor/lib && env -u GIT_DIR -u GIT_WORK_TREE sh -c 'git init -q && echo lib > lib.c && git add lib.c && git -c user.name=a -c user.email=a@b.invalid commit -qm lib' && echo wip > wip.c",
  ]);
  assert.is(nested.exitCode, 0, nested.stderr);
  const files = await para(repo, 'sync.ts', ['mirb', '--files']);
  assert.is(files.exitCode, 0, files.stderr);
  assert.match(files.stderr, 'vendor/lib');
  const finished = await para(repo, 'finish.ts', ['mirb', '-m', 'with a nested repository', '--json']);
  assert.is(finished.exitCode, 0, finished.stderr);
  const kept = (JSON.parse(finished.stdout) as { keptFolder: string }).keptFolder;
  const listing = (await execa('tar', ['-tf', path.join(kept, 'agent-repository.tar')])).stdout;
  assert.match(listing, 'work/vendor/lib/wip.c');
  // The agent's words reach the terminal with their control characters shown, not obeyed.
  await agent(
    "git config filter.noisy.clean 'printf \"\\033]0;OWNED\\007\\033[2Jlies\" >&2; exit 1' && git config filter.noisy.required true && echo '* filter=noisy' > .gitattributes && echo x > y.txt",
  );
  const noisy = await para(repo, 'sync.ts', ['mira', '--files']);
  assert.not.match(noisy.stderr, '\u001b', 'an escape code reached the terminal');
  await para(repo, 'cancel.ts', ['mira', '--force']);
});

onRemote('another repository at the same path (another machine on the same engine) is not this one: clean leaves its session alone', async () => {
  if (!root) return;
  const first = await makeRepo();
  const started = await para(first, 'start.ts', [
    'twin',
    '--container',
    '--detach',
    '--context',
    CONTEXT,
    '--egress',
    'none',
    '--image',
    SESSION_IMAGE,
    '--',
    'sleep',
    '300',
  ]);
  assert.is(started.exitCode, 0, started.stderr);
  const container = sessionPaths({ root: first.root, commonDir: '' }, 'twin').container;
  // The first repository moves away; a different one is made at the same path.
  const moved = `${first.root}-elsewhere`;
  await fs.move(first.root, moved);
  await fs.mkdir(first.root);
  const second: TestRepo = { ...first, git: (args) => execa('git', args, { cwd: first.root, env: first.env }).then((r) => r.stdout.trim()) };
  await second.git(['init', '-q', '-b', 'main']);
  await second.git(['commit', '-q', '--allow-empty', '-m', 'another repository']);
  const cleaned = await para(second, 'clean.ts', [], { DOCKER_CONTEXT: CONTEXT });
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  assert.ok((await remote(['inspect', '--format', '{{.State.Running}}', container])).stdout.includes('true'), "clean removed another repository's session");
  await remote(['rm', '-f', container]);
});

onRemote('an engine over ssh:// (sshd on a loopback port, a throwaway key): the session is remote there too', async () => {
  if (!root) return;
  const sshd = ['/usr/sbin/sshd', '/usr/bin/ssh', '/usr/bin/ssh-keygen'];
  for (const tool of sshd) assert.ok(await fs.pathExists(tool), `${tool} is missing: .ci/run installs openssh-server`);
  const dir = await fs.mkdtemp('/tmp/ps-');
  const port = 20000 + Math.floor(Math.random() * 30000);
  for (const key of ['host', 'user']) await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, key)]);
  await fs.copy(path.join(dir, 'user.pub'), path.join(dir, 'authorized_keys'));
  await fs.writeFile(
    path.join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${dir}/host`,
      `AuthorizedKeysFile ${dir}/authorized_keys`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'UsePAM no',
      `PidFile ${dir}/sshd.pid`,
      'StrictModes no',
      '',
    ].join('\n'),
  );
  await fs.writeFile(
    path.join(dir, 'ssh_config'),
    ['Host 127.0.0.1', `  IdentityFile ${dir}/user`, '  StrictHostKeyChecking no', '  UserKnownHostsFile /dev/null', '  LogLevel ERROR', ''].join('\n'),
  );
  // The docker CLI runs `ssh` from PATH: this one reads the test's own configuration.
  await fs.mkdir(path.join(dir, 'bin'));
  await fs.writeFile(path.join(dir, 'bin', 'ssh'), `#!/bin/sh\nexec /usr/bin/ssh -F ${dir}/ssh_config "$@"\n`, { mode: 0o755 });
  await fs.mkdir('/run/sshd', { recursive: true });
  const started = await execa('/usr/sbin/sshd', ['-f', path.join(dir, 'sshd_config'), '-E', path.join(dir, 'sshd.log')], { reject: false });
  assert.is(started.exitCode, 0, started.stderr);
  onCleanup(async () => {
    const pid = Number(await fs.readFile(path.join(dir, 'sshd.pid'), 'utf8').catch(() => '0'));
    if (pid) process.kill(pid, 'SIGTERM');
    await fs.rm(dir, { recursive: true, force: true });
  });
  const env = { DOCKER_HOST: `ssh://root@127.0.0.1:${port}`, PATH: `${dir}/bin:${process.env.PATH}` };
  await waitUntil('docker over ssh to answer', async () => (await execa('docker', ['info'], { env, reject: false })).exitCode === 0, 20_000);
  const repo = await makeRepo();
  const run = await para(
    repo,
    'start.ts',
    [
      'overssh',
      '--container',
      '--detach',
      '--egress',
      'none',
      '--image',
      SESSION_IMAGE,
      '--json',
      '--',
      'sh',
      '-c',
      'echo s > s.txt && git add s.txt && git commit -qm ssh',
    ],
    env,
  );
  assert.is(run.exitCode, 0, run.stderr);
  assert.equal((JSON.parse(run.stdout) as { engine: unknown }).engine, { context: null, host: env.DOCKER_HOST, remote: true });
  const logs = await para(repo, 'logs.ts', ['overssh', '-f'], { PATH: env.PATH });
  assert.is(logs.exitCode, 0, logs.stderr);
  assert.is(await repo.git(['log', '-1', '--format=%s', 'para/overssh']), 'ssh');
  // That engine is this machine's own here: what matters is that para gave the container no bind mount.
  const container = sessionPaths({ root: repo.root, commonDir: '' }, 'overssh').container;
  const mounts = (await execa('docker', ['inspect', '--format', '{{json .Mounts}}', container], { reject: false })).stdout;
  assert.not.match(mounts, '"Type":"bind"');
  const cancelled = await para(repo, 'cancel.ts', ['overssh', '--force'], { PATH: env.PATH });
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
});

onRemote.run();
