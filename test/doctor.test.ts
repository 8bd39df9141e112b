// doctor: the check runner and findings as units; doctor.ts end to end against the real engine.
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { labels, MANAGED_BY } from '../scripts/lib/config.ts';
import { expiryFinding, parseFacts, SETUP_TOKEN_WARN_MS } from '../scripts/lib/doctor/credentials.ts';
import { runDoctor } from '../scripts/lib/doctor/index.ts';
import { formatReport } from '../scripts/lib/doctor/report.ts';
import { fail, ok, runChecks, type Check } from '../scripts/lib/doctor/runner.ts';
import { compareSessions } from '../scripts/lib/doctor/sessions.ts';
import { platformFinding } from '../scripts/lib/doctor/system.ts';
import { commitContainer } from './support/verbs.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import type { ContainerInfo } from '../scripts/lib/engine/engine.ts';
import { ParaError } from '../scripts/lib/errors.ts';
import { findRepo } from '../scripts/lib/git.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import type { Repo } from '../scripts/lib/repo.ts';
import { ensureStateDir, writeSession, type SessionState } from '../scripts/lib/session/store.ts';
import { fakeDockerDir, runDoctorJson, tempRepo, type DoctorRun } from './support/doctor.ts';
import { BASE_IMAGE, buildAuthImage, CLAUDE_IMAGE, FAKE_REFRESH, FAKE_TOKEN, fakeHome, runScript, testClaudeImage } from './support/images.ts';
import { RUN_ID, TEST_LABEL, tempDir, trackImage, uniqueName } from './support/resources.ts';

const DAY = 24 * 3600_000;
const IMAGE_CHECKS = ['image', 'image-auth', 'credentials-expiry', 'host-login-newer'];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function assertNoSecret(run: { stdout: string; stderr: string }): void {
  for (const secret of [FAKE_TOKEN, FAKE_REFRESH]) {
    assert.not.ok(run.stdout.includes(secret) || run.stderr.includes(secret), 'a token was printed');
  }
}

function assertJsonMatchesExit(run: DoctorRun): void {
  assert.is(run.report.ok, run.exitCode === 0, `ok=${run.report.ok} but exit code ${run.exitCode}`);
  for (const check of run.report.checks) {
    assert.ok(['ok', 'warn', 'fail', 'skip'].includes(check.status), `${check.id} has status ${check.status}`);
    assert.type(check.message, 'string');
    if (check.status === 'warn' || check.status === 'fail') assert.ok(check.fix, `${check.id} ${check.status} has no fix`);
  }
}

// ---- units ----------------------------------------------------------------------------------

const runner = suite('doctor check runner');

runner('independent checks overlap in time', async () => {
  const slow = (id: string): Check<null> => ({
    id,
    deadlineMs: 5000,
    run: async () => {
      await sleep(300);
      return ok(id);
    },
  });
  const started = Date.now();
  const results = await runChecks([slow('a'), slow('b'), slow('c')], null);
  assert.equal(
    results.map((r) => r.status),
    ['ok', 'ok', 'ok'],
  );
  assert.ok(Date.now() - started < 800, `three 300 ms checks took ${Date.now() - started} ms`);
});

runner('a check that passes its deadline fails with the time and a fix', async () => {
  const [result] = await runChecks([{ id: 'hang', deadlineMs: 100, timeoutFix: 'restart it', run: () => new Promise(() => undefined) }], null);
  assert.is(result.status, 'fail');
  assert.match(result.message, /did not finish within 100 ms/);
  assert.is(result.fix, 'restart it');
});

runner('a failed prerequisite skips its dependents, naming the root cause once', async () => {
  const results = await runChecks<null>(
    [
      { id: 'daemon', deadlineMs: 1000, run: async () => fail('down', 'start it') },
      { id: 'image', needs: ['daemon'], deadlineMs: 1000, run: async () => ok('never') },
      { id: 'auth', needs: ['image'], deadlineMs: 1000, run: async () => ok('never') },
    ],
    null,
  );
  assert.equal(
    results.map((r) => r.status),
    ['fail', 'skip', 'skip'],
  );
  assert.is(results[2].message, 'skipped: daemon failed');
  assert.is(results.filter((r) => r.status === 'fail').length, 1);
});

runner('a thrown ParaError becomes a failure with its hint', async () => {
  const [result] = await runChecks(
    [
      {
        id: 'x',
        deadlineMs: 1000,
        run: async () => {
          throw new ParaError('broke', { hint: 'do this' });
        },
      },
    ],
    null,
  );
  assert.equal({ status: result.status, message: result.message, fix: result.fix }, { status: 'fail', message: 'broke', fix: 'do this' });
});

runner('a prerequisite declared after its dependent is a programming error', async () => {
  try {
    await runChecks<null>(
      [
        { id: 'a', needs: ['b'], deadlineMs: 1, run: async () => ok('') },
        { id: 'b', deadlineMs: 1, run: async () => ok('') },
      ],
      null,
    );
    assert.unreachable('should have thrown');
  } catch (error) {
    assert.match(String(error), /needs b/);
  }
});

runner.run();

const findings = suite('doctor findings');
const now = Date.parse('2030-01-01T00:00:00Z');

findings('Windows fails as not supported yet; Linux and macOS pass', () => {
  const windows = platformFinding('win32');
  assert.is(windows.status, 'fail');
  assert.match(windows.message, /not supported yet/);
  assert.ok(windows.fix);
  assert.is(platformFinding('linux').status, 'ok');
  assert.is(platformFinding('darwin').status, 'ok');
});

findings('an expired subscription token warns that a refresh can log the host out', () => {
  const finding = expiryFinding({ source: 'subscription', expiresAt: now - DAY, estimated: false }, now, 'make image');
  assert.is(finding.status, 'warn');
  assert.match(finding.message, /expired 1 day ago/);
  assert.match(finding.message, /log the host out/);
  assert.match(finding.fix ?? '', /make image/);
});

findings('a setup-token warns in its last month, not before', () => {
  const near = expiryFinding({ source: 'oauth-token', expiresAt: now + SETUP_TOKEN_WARN_MS - DAY, estimated: true }, now, 'make image');
  assert.is(near.status, 'warn');
  assert.match(near.fix ?? '', /claude setup-token/);
  assert.is(expiryFinding({ source: 'oauth-token', expiresAt: now + 200 * DAY, estimated: true }, now, 'make image').status, 'ok');
});

findings('API keys never expire and images without credentials are skipped', () => {
  assert.is(expiryFinding({ source: 'api-key', estimated: false }, now, 'make image').status, 'ok');
  assert.is(expiryFinding({ estimated: false }, now, 'make image').status, 'skip');
});

findings('only well-formed fact lines are read from inside an image', () => {
  assert.equal(parseFacts('kind=subscription\nexpiresAt=1700000000000\n'), { source: 'subscription', expiresAt: 1700000000000, estimated: false });
  assert.equal(parseFacts('{"accessToken":"x"}\nexpiresAt=abc\nkind=other\n'), { estimated: false });
});

findings('a container is claimed only by a live session naming it, as clean.ts decides', () => {
  const container = (name: string, session?: string) =>
    ({ Id: name, Name: `/${name}`, Config: { Labels: session ? { [labels.session]: session } : {} } }) as unknown as ContainerInfo;
  const repo: Repo = { root: '/r', commonDir: '/r/.git' };
  const c = (name: string) => sessionPaths(repo, name).container;
  const state = (name: string, status: SessionState['status'], containerRef: string | null) => ({ name, status, container: containerRef }) as SessionState;
  const result = compareSessions(
    repo,
    [state('alive', 'active', c('alive')), state('gone', 'active', c('gone')), state('done', 'finished', c('done')), state('new', 'starting', c('new'))],
    [
      container(c('alive'), 'alive'),
      container(c('done'), 'done'),
      container(c('ghost'), 'ghost'),
      container('c-unlabelled'),
      container(c('new'), 'new'),
      container('para-alive-00000000', 'alive'),
    ],
  );
  assert.equal(result, { orphans: ['c-unlabelled', c('done'), c('ghost'), 'para-alive-00000000'].sort(), missing: ['gone'] });
});

findings('the table shows every check and a fix under each problem', () => {
  const text = formatReport({
    ok: false,
    image: 'img',
    checks: [
      { id: 'platform', status: 'ok', message: 'Linux', fix: null, durationMs: 1 },
      { id: 'docker-daemon', status: 'fail', message: 'down', fix: 'start it', durationMs: 1 },
    ],
  });
  assert.match(text, /ok\s+platform\s+Linux/);
  assert.match(text, /fail\s+docker-daemon\s+down\n\s+fix: start it/);
  assert.match(text, /1 check failed/);
  assert.not.match(text, /\u001b\[/);
});

findings.run();

// ---- doctor.ts against the real engine -------------------------------------------------------

const daemon = suite('doctor when docker cannot be used');
let repo = '';

daemon.before(async () => {
  repo = await tempRepo();
});

daemon('a DOCKER_HOST pointing nowhere fails the daemon check, skips the image checks, exits 1', async () => {
  const run = await runDoctorJson([], { cwd: repo, env: { DOCKER_HOST: 'unix:///nonexistent/path.sock' } });
  assert.is(run.exitCode, 1, run.stderr);
  assertJsonMatchesExit(run);
  const check = run.check('docker-daemon');
  assert.is(check.status, 'fail');
  assert.match(check.message, /DOCKER_HOST=unix:\/\/\/nonexistent\/path\.sock/);
  assert.match(check.fix ?? '', /DOCKER_HOST/);
  for (const id of [...IMAGE_CHECKS, 'sessions']) assert.is(run.check(id).status, 'skip', `${id} should be skipped`);
  assert.is(run.report.checks.filter((c) => c.status === 'fail').length, 1, 'only the daemon check fails');
  assert.is(run.check('docker-cli').status, 'ok');
});

daemon('a daemon that is not running says so and how to start it', async () => {
  const dir = await fakeDockerDir('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?');
  const run = await runDoctorJson([], {
    cwd: repo,
    env: { PATH: `${dir}${path.delimiter}${process.env.PATH}`, DOCKER_HOST: undefined, DOCKER_CONTEXT: undefined },
  });
  assert.is(run.exitCode, 1);
  assert.match(run.check('docker-daemon').message, /not running/);
  assert.match(run.check('docker-daemon').fix ?? '', /start/);
  assert.is(run.check('image').status, 'skip');
});

daemon('permission denied on the socket points at the docker group', async () => {
  const dir = await fakeDockerDir(
    'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: dial unix /var/run/docker.sock: connect: permission denied',
  );
  const run = await runDoctorJson([], { cwd: repo, env: { PATH: `${dir}${path.delimiter}${process.env.PATH}`, DOCKER_HOST: undefined } });
  assert.is(run.exitCode, 1);
  assert.match(run.check('docker-daemon').message, /permission denied/);
  assert.match(run.check('docker-daemon').fix ?? '', /docker group/);
});

daemon('no docker on PATH fails docker-cli once and skips the rest', async () => {
  const empty = await tempDir('para-empty-path-');
  const run = await runDoctorJson([], { cwd: repo, env: { PATH: empty } });
  assert.is(run.exitCode, 1);
  assert.is(run.check('docker-cli').status, 'fail');
  assert.match(run.check('docker-cli').message, /not installed/);
  assert.is(run.check('docker-daemon').status, 'skip');
  assert.is(run.check('image-auth').status, 'skip');
});

daemon('bad usage exits 2 and --json still prints ok: false', async () => {
  const run = await runScript('doctor.ts', ['--json', '--no-such-flag'], { cwd: repo });
  assert.is(run.exitCode, 2);
  assert.is((JSON.parse(run.stdout) as { ok: boolean }).ok, false);
  assert.match(run.stderr, /unknown option --no-such-flag/);
});

daemon.run();

const images = suite('doctor and the image');
const missing = `para-doctor-missing-${RUN_ID}:latest`;
let healthy = '';
let expired = '';
let healthyHome = '';
let imageRepo = '';

images.before(async () => {
  imageRepo = await tempRepo();
  await testClaudeImage();
  healthyHome = await fakeHome();
  healthy = uniqueName('para-doctor-healthy');
  const built = await buildAuthImage(healthy, healthyHome);
  assert.is(built.exitCode, 0, built.stderr);
  const expiredHome = await fakeHome({ expiresAt: Date.now() - 2 * DAY });
  expired = uniqueName('para-doctor-expired');
  const builtExpired = await buildAuthImage(expired, expiredHome);
  assert.is(builtExpired.exitCode, 0, builtExpired.stderr);
});

const inHome = (home: string) => ({ HOME: home, CLAUDE_CONFIG_DIR: undefined });

images('a healthy image passes every check, and --json ok is true with exit 0', async () => {
  const run = await runDoctorJson(['--image', healthy], { cwd: imageRepo, env: inHome(healthyHome) });
  assertNoSecret(run);
  assert.is(run.exitCode, 0, JSON.stringify(run.report.checks, null, 2));
  assertJsonMatchesExit(run);
  for (const id of ['platform', 'docker-cli', 'docker-daemon', 'git', ...IMAGE_CHECKS, 'sessions']) {
    assert.is(run.check(id).status, 'ok', `${id}: ${run.check(id).message}`);
  }
  assert.match(run.check('image').message, /built .* ago.*subscription login \(claude\.ai, max\)/);
  assert.match(run.check('image-auth').message, /logged in \(claude\.ai/);
});

images('the table on stdout lists every check', async () => {
  const run = await runScript('doctor.ts', ['--image', healthy], { cwd: imageRepo, env: inHome(healthyHome) });
  assert.is(run.exitCode, 0);
  assertNoSecret(run);
  for (const id of ['platform', 'docker-daemon', 'image-auth', 'sessions']) assert.match(run.stdout, new RegExp(`ok\\s+${id}\\s`));
  assert.match(run.stdout, /all checks passed/);
});

images('a missing image fails with make image and skips what depends on it', async () => {
  const run = await runDoctorJson(['--image', missing], { cwd: imageRepo, env: inHome(healthyHome) });
  assert.is(run.exitCode, 1);
  assertJsonMatchesExit(run);
  assert.is(run.check('image').status, 'fail');
  assert.match(run.check('image').message, /does not exist/);
  assert.match(run.check('image').fix ?? '', /^make image/);
  for (const id of ['image-auth', 'credentials-expiry', 'host-login-newer']) assert.is(run.check(id).status, 'skip');
});

images('an image with no credentials fails image-auth', async () => {
  const run = await runDoctorJson(['--image', CLAUDE_IMAGE], { cwd: imageRepo, env: inHome(healthyHome) });
  assert.is(run.exitCode, 1);
  const check = run.check('image-auth');
  assert.is(check.status, 'fail');
  assert.match(check.message, /not logged in/);
  assert.match(check.fix ?? '', /make image.*make login/);
  assert.is(run.check('credentials-expiry').status, 'skip');
});

images('an image built from an expired login warns about the expiry', async () => {
  const run = await runDoctorJson(['--image', expired], { cwd: imageRepo, env: inHome(healthyHome) });
  assertNoSecret(run);
  assertJsonMatchesExit(run);
  const check = run.check('credentials-expiry');
  assert.is(check.status, 'warn', check.message);
  assert.match(check.message, /expired/);
  assert.match(check.fix ?? '', /make image/);
});

images('an image without credential labels has its expiry read inside it, and no token comes out', async () => {
  const container = uniqueName('para-doctor-unlabel');
  const image = trackImage(`${uniqueName('para-doctor-unlabelled')}:latest`);
  await docker(['create', '--network', 'none', '--name', container, '--label', `${TEST_LABEL}=${RUN_ID}`, healthy, 'true']);
  try {
    await commitContainer(container, image, [`LABEL ${labels.credentialsSource}="" ${labels.credentialsExpiresAt}=""`]);
  } finally {
    await docker(['rm', '--force', container], { allowFailure: true });
  }
  const run = await runDoctorJson(['--image', image], { cwd: imageRepo, env: inHome(healthyHome) });
  assertNoSecret(run);
  const check = run.check('credentials-expiry');
  assert.is(check.status, 'ok', check.message);
  assert.match(check.message, /access token is valid until .* \(in (29|30) days\)/);
});

images('a host login that changed after the build warns to rebuild', async () => {
  const home = await fakeHome();
  const image = uniqueName('para-doctor-stale');
  const built = await buildAuthImage(image, home);
  assert.is(built.exitCode, 0, built.stderr);
  const later = new Date(Date.now() + 60_000);
  await fs.utimes(path.join(home, '.claude', '.credentials.json'), later, later);
  const run = await runDoctorJson(['--image', image], { cwd: imageRepo, env: inHome(home) });
  assertNoSecret(run);
  assert.is(run.exitCode, 0);
  const check = run.check('host-login-newer');
  assert.is(check.status, 'warn', check.message);
  assert.match(check.message, /after the image was built/);
  assert.match(check.fix ?? '', /make image/);
});

images('Windows, through an injected platform, fails the platform check', async () => {
  const report = await runDoctor({ platform: 'win32', image: missing, cwd: imageRepo });
  const platform = report.checks.find((c) => c.id === 'platform')!;
  assert.is(platform.status, 'fail');
  assert.match(platform.message, /Windows is not supported yet/);
  assert.is(report.ok, false);
});

images.run();

const sessions = suite("doctor and this repository's sessions");
let sessionRepo = '';
const made: Record<string, string> = {};

async function labelledContainer(repoRoot: string, session: string): Promise<string> {
  const name = sessionPaths({ root: repoRoot, commonDir: path.join(repoRoot, '.git') }, session).container;
  await docker([
    'create',
    '--network',
    'none',
    '--name',
    name,
    '--label',
    `${labels.managedBy}=${MANAGED_BY}`,
    '--label',
    `${labels.repo}=${repoRoot}`,
    '--label',
    `${labels.session}=${session}`,
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    BASE_IMAGE,
    'true',
  ]);
  return name;
}

function state(root: string, name: string, status: SessionState['status']): SessionState {
  return {
    version: 2,
    name,
    repo: root,
    branch: `para/${name}`,
    baseBranch: 'main',
    baseCommit: '0'.repeat(40),
    worktree: path.join(root, '.para', 'worktrees', name),
    container: sessionPaths(doctorRepo(root), name).container,
    image: null,
    network: null,
    limits: null,
    prompt: null,
    createdAt: new Date().toISOString(),
    status,
    job: null,
  };
}

function doctorRepo(root: string): Repo {
  return { root, commonDir: path.join(root, '.git') };
}

sessions.before(async () => {
  sessionRepo = (await findRepo(await tempRepo())).root;
  const otherRepo = (await findRepo(await tempRepo())).root;
  await ensureStateDir(doctorRepo(sessionRepo));
  made.alive = await labelledContainer(sessionRepo, 'alive');
  made.done = await labelledContainer(sessionRepo, 'done');
  made.ghost = await labelledContainer(sessionRepo, 'ghost');
  made.other = await labelledContainer(otherRepo, 'ghost');
  await writeSession(doctorRepo(sessionRepo), state(sessionRepo, 'alive', 'active'));
  await writeSession(doctorRepo(sessionRepo), state(sessionRepo, 'done', 'finished'));
  await writeSession(doctorRepo(sessionRepo), state(sessionRepo, 'gone', 'active'));
});

sessions.after(async () => {
  for (const name of Object.values(made)) await docker(['rm', '--force', name], { allowFailure: true });
});

sessions('orphan containers and sessions without a container warn; other repositories are not reported', async () => {
  const run = await runDoctorJson(['--image', missing], { cwd: sessionRepo });
  const check = run.check('sessions');
  assert.is(check.status, 'warn', check.message);
  assert.match(check.message, /2 containers or volumes with no live session/);
  assert.ok(check.message.includes(made.ghost) && check.message.includes(made.done), check.message);
  assert.match(check.message, /1 active session whose container is gone \(gone\)/);
  assert.not.ok(check.message.includes(made.other), "another repository's container was reported");
  assert.not.ok(check.message.includes(made.alive), "a live session's container was reported");
  assert.match(check.fix ?? '', /clean/);
  assert.match(check.fix ?? '', /start each again|cancel/);
});

sessions.run();
