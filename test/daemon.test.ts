// A Docker daemon restarted under a running background job, on a private engine of the test's
// own (its own socket, data root, exec root and pid file), so the shared engine is never touched.
import { execa } from 'execa';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { BASE_IMAGE, scriptCommand, detachedArgs } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { RUN_ID, TEST_LABEL } from './support/resources.ts';
import { privateEngine, waitUntil, type PrivateEngine } from './support/engine.ts';

let engine: PrivateEngine;
const IMAGE = `para-daemon-test-${RUN_ID}:latest`;

function para(repo: TestRepo, script: string, args: string[]) {
  const [command, ...entry] = scriptCommand(script);
  return execa(command, [...entry, ...args], {
    cwd: repo.root,
    env: { ...repo.env, DOCKER_HOST: engine.host, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
    reject: false,
    stdin: 'ignore',
    timeout: 3 * 60_000,
  });
}

const restart = suite('a daemon restart while a job runs');

restart.before(async () => {
  if (process.getuid?.() !== 0) return;
  engine = await privateEngine();
  // A small session image on that engine: the base image with git and a user para.
  const saved = await execa('sh', ['-c', 'docker save "$1" | DOCKER_HOST="$2" docker load -q', 'sh', BASE_IMAGE, engine.host], { reject: false });
  assert.is(saved.exitCode, 0, saved.stderr);
  const built = await engine.docker(
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
  await engine.stop();
  await engine.start();
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
