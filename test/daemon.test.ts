// A Docker daemon restarted under a running background job, on a private engine of the test's
// own (its own socket, data root, exec root and pid file), so the shared engine is never touched.
import { execa, type ResultPromise } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BASE_IMAGE, scriptCommand, detachedArgs } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { RUN_ID, TEST_LABEL, onCleanup } from './support/resources.ts';

const engine = { dir: '', socket: '', args: [] as string[], daemon: undefined as ResultPromise | undefined };
const IMAGE = `para-daemon-test-${RUN_ID}:latest`;

async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(200);
  }
}

function privateDocker(args: string[], input?: string) {
  return execa('docker', args, { env: { DOCKER_HOST: `unix://${engine.socket}` }, reject: false, input });
}

async function startDaemon(): Promise<void> {
  engine.daemon = execa('dockerd', engine.args, { reject: false, stdio: ['ignore', 'ignore', 'ignore'] });
  await waitUntil('the private dockerd to answer', async () => (await privateDocker(['info'])).exitCode === 0);
}

async function stopDaemon(): Promise<void> {
  if (!engine.daemon) return;
  engine.daemon.kill('SIGTERM');
  await engine.daemon;
  engine.daemon = undefined;
}

function para(repo: TestRepo, script: string, args: string[]) {
  const [command, ...entry] = scriptCommand(script);
  return execa(command, [...entry, ...args], {
    cwd: repo.root,
    env: { ...repo.env, DOCKER_HOST: `unix://${engine.socket}`, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
    reject: false,
    stdin: 'ignore',
    timeout: 3 * 60_000,
  });
}

const restart = suite('a daemon restart while a job runs');

restart.before(async () => {
  if (process.getuid?.() !== 0) return;
  // Short paths: containerd's sockets live under the exec root, and unix socket paths are short.
  engine.dir = await fs.mkdtemp('/tmp/pd-');
  engine.socket = path.join(engine.dir, 'docker.sock');
  engine.args = [
    '--host',
    `unix://${engine.socket}`,
    '--data-root',
    path.join(engine.dir, 'data'),
    '--exec-root',
    path.join(engine.dir, 'x'),
    '--pidfile',
    path.join(engine.dir, 'pid'),
    '--bridge=none',
    '--iptables=false',
    '--ip-forward=false',
    '--ip-masq=false',
  ];
  onCleanup(async () => {
    await stopDaemon();
    await execa('sh', ['-c', 'grep -o " $1[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l', 'sh', engine.dir], { reject: false });
    await fs.rm(engine.dir, { recursive: true, force: true });
  });
  await startDaemon();
  // A small session image on that engine: the base image with git and a user para.
  const saved = await execa('sh', ['-c', 'docker save "$1" | DOCKER_HOST="$2" docker load -q', 'sh', BASE_IMAGE, `unix://${engine.socket}`], { reject: false });
  assert.is(saved.exitCode, 0, saved.stderr);
  const built = await privateDocker(
    ['build', '-q', '-t', IMAGE, '-'],
    `FROM ${BASE_IMAGE}\nRUN useradd --uid 1000 --create-home --shell /bin/bash para\nENV HOME=/home/para\nUSER para\n`,
  );
  assert.is(built.exitCode, 0, built.stderr);
});

restart('list stops saying running, logs -f ends, and the session resumes with its work', async () => {
  if (process.getuid?.() !== 0) return; // starting a second dockerd needs root, as CI has
  const repo = await makeRepo();
  const started = await para(
    repo,
    'start.ts',
    detachedArgs('job', IMAGE, '--', 'sh', '-c', 'echo made > made.txt && git add made.txt && git commit -qm before && echo following && sleep 300'),
  );
  assert.is(started.exitCode, 0, started.stderr);
  await waitUntil('the job to run', async () => JSON.parse((await para(repo, 'list.ts', ['--json'])).stdout).sessions[0].job.state === 'running');
  const follow = para(repo, 'logs.ts', ['job', '-f']);
  let seen = '';
  follow.stdout?.on('data', (chunk: Buffer) => {
    seen += chunk.toString();
  });
  await waitUntil('logs -f to follow the job', async () => seen.includes('following'));
  await stopDaemon();
  await startDaemon();
  const followed = await follow;
  assert.is.not(followed.exitCode, 0, 'logs -f reported success for a job that never finished');
  assert.ok(!followed.timedOut, 'logs -f did not end');
  const listed = JSON.parse((await para(repo, 'list.ts', ['--json'])).stdout) as { sessions: Array<{ job: { state: string }; containerState: string }> };
  assert.is(listed.sessions[0].job.state, 'lost');
  assert.is(listed.sessions[0].containerState, 'exited');
  // Starting it again brings the container back with the agent's repository, and its commit home.
  const resumed = await para(repo, 'start.ts', ['job', '--container', '--detach', '--image', IMAGE, '--', 'git', 'log', '-1', '--format=%s']);
  assert.is(resumed.exitCode, 0, resumed.stderr);
  const logs = await para(repo, 'logs.ts', ['job', '-f']);
  assert.is(logs.exitCode, 0, logs.stderr);
  assert.is(logs.stdout.trim(), 'before');
  assert.is(await repo.git(['log', '-1', '--format=%s', 'para/job']), 'before');
  const cancelled = await para(repo, 'cancel.ts', ['job', '--force']);
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
});

restart.run();
