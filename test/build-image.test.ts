import { execa } from 'execa';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { labels } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { imageExists } from './support/verbs.ts';
import { fakeDockerDir } from './support/doctor.ts';
import { buildAuthImage, FAKE_HOMES, FAKE_REFRESH, FAKE_TOKEN, fakeHome, runScript } from './support/images.ts';
import { RUN_ID, tempDir } from './support/resources.ts';

async function authStatus(image: string): Promise<{ loggedIn: boolean; authMethod: string; subscriptionType?: string }> {
  const result = await docker(['run', '--rm', '--network', 'none', image, 'claude', 'auth', 'status'], { allowFailure: true });
  return JSON.parse(result.stdout);
}

/** Files under dir (not under the excluded folders) whose content holds needle. */
async function filesContaining(dir: string, needle: string, exclude: string[], depth = 4): Promise<string[]> {
  const hits: string[] = [];
  let entries: fs.Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return hits;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (exclude.some((e) => full === e || full.startsWith(`${e}/`))) continue;
    if (entry.isDirectory() && depth > 0) hits.push(...(await filesContaining(full, needle, exclude, depth - 1)));
    else if (entry.isFile()) {
      const stat = await fs.stat(full).catch(() => undefined);
      if (stat && stat.size < 5_000_000 && (await fs.readFile(full, 'utf8').catch(() => '')).includes(needle)) hits.push(full);
    }
  }
  return hits;
}

/** What a build left in its private TMPDIR (tsx's own compile cache aside): it must be nothing. */
async function leftovers(tmpdir: string): Promise<string[]> {
  return (await fs.readdir(tmpdir)).filter((name) => !name.startsWith('tsx-'));
}

/** Temporary tags that appeared since `before` and stay: another process's build may own a
 * tag for a few seconds, a leaked one stays for good. */
async function leakedTemporaryTags(before: string[]): Promise<string[]> {
  const deadline = Date.now() + 30_000;
  let fresh = (await temporaryTags()).filter((tag) => !before.includes(tag));
  while (fresh.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 1000));
    fresh = (await temporaryTags()).filter((tag) => !before.includes(tag));
  }
  return fresh;
}

async function temporaryTags(): Promise<string[]> {
  return (await docker(['images', 'para-build-tmp', '--format', '{{.Repository}}:{{.Tag}}'])).stdout.split('\n').filter(Boolean);
}

const build = suite('make image from a subscription login');
const state: { home: string; tmp: string; tag: string; output: string; json: Record<string, unknown> } = {
  home: '',
  tmp: '',
  tag: `para-auth-test-${RUN_ID}:sub`,
  output: '',
  json: {},
};

build.before(async () => {
  state.home = await fakeHome({ subscriptionType: 'max' });
  state.tmp = await tempDir('para-test-tmp-');
  const result = await buildAuthImage(state.tag, state.home, ['--json'], { tmpdir: state.tmp });
  state.output = result.stdout + result.stderr;
  assert.is(result.exitCode, 0, `build-image failed: ${result.stderr}`);
  state.json = JSON.parse(result.stdout);
});

build('the real claude CLI in the image reports logged in with the fake subscription', async () => {
  const status = await authStatus(state.tag);
  assert.is(status.loggedIn, true);
  assert.is(status.authMethod, 'claude.ai');
  assert.is(status.subscriptionType, 'max');
  assert.is(state.json.ok, true);
  assert.is(state.json.authMethod, 'claude.ai');
});

build('the fake token is absent from history, inspect, the build output and the host temp folders', async () => {
  const history = (await docker(['history', '--no-trunc', state.tag])).stdout;
  const inspect = (await docker(['image', 'inspect', state.tag])).stdout;
  for (const secret of [FAKE_TOKEN, FAKE_REFRESH]) {
    assert.not.ok(history.includes(secret), 'secret in docker history');
    assert.not.ok(inspect.includes(secret), 'secret in docker inspect');
    assert.not.ok(state.output.includes(secret), 'secret in the build output');
  }
  assert.equal(await filesContaining(state.tmp, FAKE_TOKEN, []), []);
  // Fake HOMEs (this test's and other tests') are where the token is meant to be; other
  // temporary folders of the tests that hold it on purpose are named para-test-home-*.
  const sources = [...FAKE_HOMES];
  for (const name of await fs.readdir(os.tmpdir())) if (name.startsWith('para-test-home-')) sources.push(path.join(os.tmpdir(), name));
  assert.equal(await filesContaining(os.tmpdir(), FAKE_TOKEN, sources), []);
  assert.equal(await leftovers(state.tmp), []);
});

build('the credentials file inside is 0600 and owned by para, and .claude.json holds no project history', async () => {
  const result = await docker(['run', '--rm', '--network', 'none', state.tag, 'sh', '-c', 'stat -c "%a %U" ~/.claude/.credentials.json; cat ~/.claude.json']);
  const [mode, ...rest] = result.stdout.split('\n');
  assert.is(mode, '600 para');
  const claudeJson = JSON.parse(rest.join('\n'));
  assert.is(claudeJson.hasCompletedOnboarding, true);
  assert.is(claudeJson.userID, 'test-user');
  assert.not.ok('projects' in claudeJson);
  assert.not.ok('mcpServers' in claudeJson);
});

build('the image carries the non-secret facts as labels and runs as a non-root user', async () => {
  const info = JSON.parse((await docker(['image', 'inspect', '--format', '{{json .Config}}', state.tag])).stdout);
  assert.is(info.Labels[labels.authMethod], 'claude.ai');
  assert.is(info.Labels[labels.credentialsSource], 'subscription');
  assert.is(info.Labels[labels.subscriptionType], 'max');
  assert.ok(Date.parse(info.Labels[labels.credentialsExpiresAt]) > Date.now());
  assert.ok(Date.parse(info.Labels[labels.builtAt]) <= Date.now());
  assert.is(info.User, 'para');
  const id = (await docker(['run', '--rm', '--network', 'none', state.tag, 'id', '-u'])).stdout.trim();
  assert.is.not(id, '0');
});

build('a subscription login produces the refresh warning', () => {
  assert.ok((state.json.warnings as string[]).some((w) => /log the host out/.test(w)));
});

build.run();

const routes = suite('make image from a token, a failure, nothing');

routes('the token-file route reports oauth_token inside the image and no token in inspect', async () => {
  const home = await tempDir('para-test-home-');
  await fs.writeFile(path.join(home, 'token'), `${FAKE_TOKEN}\n`, { mode: 0o600 });
  const tag = `para-auth-test-${RUN_ID}:token`;
  const result = await buildAuthImage(tag, home, ['--token-file', path.join(home, 'token'), '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  assert.is((await authStatus(tag)).authMethod, 'oauth_token');
  assert.not.ok((await docker(['image', 'inspect', tag])).stdout.includes(FAKE_TOKEN));
  assert.not.ok((result.stdout + result.stderr).includes(FAKE_TOKEN));
});

routes('an expired login is built with an expiry warning', async () => {
  const home = await fakeHome({ expiresAt: Date.now() - 3600_000 });
  const tag = `para-auth-test-${RUN_ID}:expired`;
  const result = await buildAuthImage(tag, home, ['--json']);
  assert.is(result.exitCode, 0, result.stderr);
  assert.ok((JSON.parse(result.stdout).warnings as string[]).some((w) => /expired/.test(w)));
  assert.match(result.stderr, 'expired');
});

routes('a failing verification keeps the previous image and leaves no temporary tag', async () => {
  const tag = `para-auth-test-${RUN_ID}:keep`;
  const good = await buildAuthImage(tag, await fakeHome());
  assert.is(good.exitCode, 0, good.stderr);
  const before = (await docker(['image', 'inspect', '--format', '{{.Id}}', tag])).stdout.trim();
  const tagsBefore = await temporaryTags();
  // Well-formed JSON, but without the inference scope the real CLI does not count it as a login.
  const home = await tempDir('para-test-home-');
  await fs.mkdir(path.join(home, '.claude'));
  await fs.writeFile(path.join(home, '.claude/.credentials.json'), JSON.stringify({ claudeAiOauth: { accessToken: FAKE_TOKEN, scopes: ['user:profile'] } }));
  const tmp = await tempDir('para-test-tmp-');
  const bad = await buildAuthImage(tag, home, ['--json'], { tmpdir: tmp });
  assert.is(bad.exitCode, 1);
  assert.is(JSON.parse(bad.stdout).error.code, 'verification-failed');
  assert.match(bad.stderr, 'next step');
  assert.is((await docker(['image', 'inspect', '--format', '{{.Id}}', tag])).stdout.trim(), before);
  assert.equal(await leakedTemporaryTags(tagsBefore), []);
  assert.equal(await leftovers(tmp), []);
});

routes('missing credentials: a clear error, no image and no temporary folder', async () => {
  const tag = `para-auth-test-${RUN_ID}:none`;
  const tmp = await tempDir('para-test-tmp-');
  const result = await buildAuthImage(tag, await tempDir('para-test-home-'), [], { tmpdir: tmp });
  assert.is(result.exitCode, 1);
  assert.match(result.stderr, 'no Claude credentials found');
  assert.match(result.stderr, 'make login');
  assert.is(await imageExists(tag), false);
  assert.equal(await leftovers(tmp), []);
});

routes('the Makefile passes TOKEN_FILE and TAG through to build-image.ts', async () => {
  const result = await execa('make', ['-n', 'image', 'TOKEN_FILE=/x/my token', 'TAG=a:b'], { cwd: path.resolve(import.meta.dirname, '..'), reject: false });
  assert.is(result.exitCode, 0);
  assert.match(result.stdout, 'scripts/build-image.ts');
  const shell = await execa('bash', ['-c', result.stdout.replace(/^node --import tsx scripts\/build-image.ts/m, 'printf "<%s>"')], {
    env: { TOKEN_FILE: '/x/my token', TAG: 'a:b' },
    reject: false,
  });
  assert.match(shell.stdout, '<--tag><a:b>');
  assert.match(shell.stdout, '<--token-file></x/my token>');
});

routes.run();

const broken = suite('make image when docker cannot be used');

async function buildWith(env: Record<string, string | undefined>): Promise<{ exitCode: number; stderr: string; code: string }> {
  const home = await fakeHome();
  const tmp = await tempDir('para-test-tmp-');
  const result = await runScript('build-image.ts', ['--json', '--tag', `para-auth-test-${RUN_ID}:never`], { env: { HOME: home, TMPDIR: tmp, ...env } });
  assert.equal(await leftovers(tmp), []);
  assert.not.ok((result.stdout + result.stderr).includes(FAKE_TOKEN));
  return { exitCode: result.exitCode, stderr: result.stderr, code: JSON.parse(result.stdout).error.code };
}

broken('no docker on PATH: "Docker is not installed"', async () => {
  const bin = await tempDir('para-empty-bin-');
  await fs.symlink(process.execPath, path.join(bin, 'node'));
  const result = await buildWith({ PATH: bin });
  assert.is(result.exitCode, 1);
  assert.is(result.code, 'docker-not-installed');
  assert.match(result.stderr, 'Docker is not installed');
});

broken('a daemon that is not running: start it', async () => {
  const result = await buildWith({
    PATH: `${await fakeDockerDir('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?')}:${process.env.PATH}`,
    DOCKER_HOST: undefined,
    DOCKER_CONTEXT: undefined,
  });
  assert.is(result.code, 'docker-daemon-down');
  assert.match(result.stderr, 'not running');
  assert.match(result.stderr, 'start');
});

broken('permission denied on the socket: join the docker group', async () => {
  const result = await buildWith({
    PATH: `${await fakeDockerDir('permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.24/version": dial unix /var/run/docker.sock: connect: permission denied')}:${process.env.PATH}`,
  });
  assert.is(result.code, 'docker-permission-denied');
  assert.match(result.stderr, 'docker group');
});

broken('a DOCKER_HOST that answers nothing is named in the error', async () => {
  const result = await buildWith({ DOCKER_HOST: 'unix:///nonexistent/para-test.sock' });
  assert.is(result.code, 'docker-host-unreachable');
  assert.match(result.stderr, 'DOCKER_HOST=unix:///nonexistent/para-test.sock');
});

broken('a base image that cannot be pulled says so and suggests BASE_IMAGE', async () => {
  // A fake docker: no such image anywhere, and pulling is refused (no registry traffic is made).
  const bin = await tempDir('para-fake-docker-');
  await fs.writeFile(
    path.join(bin, 'docker'),
    [
      '#!/bin/sh',
      'case "$1 $2" in',
      '  "image inspect") echo "Error: No such image: $5" >&2; exit 1;;',
      '  "pull "*) echo "Error response from daemon: pull access denied for missing-base, repository does not exist" >&2; exit 1;;',
      'esac',
      'echo "unexpected docker $*" >&2; exit 1',
    ].join('\n'),
    { mode: 0o755 },
  );
  const result = await buildWith({ PATH: `${bin}:${process.env.PATH}`, PARA_CLAUDE_IMAGE: `para-claude-never-${RUN_ID}:x` });
  assert.is(result.exitCode, 1);
  assert.match(result.stderr, 'cannot be pulled');
  assert.match(result.stderr, 'BASE_IMAGE');
});

broken.run();

const seed = suite("the original documentation's docker build command");

seed('docker build -f docker/Dockerfile.authenticated . from the repository root stops at once, naming make image, sending no context', async () => {
  const { PROJECT_ROOT } = await import('../scripts/lib/image/build.ts');
  const tag = `para-seed-command-${RUN_ID}:latest`;
  const result = await execa('docker', ['build', '-f', 'docker/Dockerfile.authenticated', '-t', tag, '.'], {
    cwd: PROJECT_ROOT,
    reject: false,
    env: { DOCKER_BUILDKIT: '0' },
  });
  assert.is.not(result.exitCode, 0);
  assert.match(result.stderr, 'run-make-image-instead');
  const sent = /Sending build context to Docker daemon\s+([\d.]+)([kMG]?B)/.exec(result.stdout);
  assert.ok(sent && (sent[2] === 'B' || sent[2] === 'kB'), `the build sent ${sent?.[1]}${sent?.[2]} of context`);
  assert.not.ok(await imageExists(tag), 'an image was built');
});

seed.run();

const npmRoute = suite("the default route: the claude CLI fetched by the host's npm");

npmRoute("without --claude-binary, the package for the engine's platform is fetched, checked and staged; the build needs no npm inside", async () => {
  const { BASE_IMAGE } = await import('./support/images.ts');
  const { trackImage } = await import('./support/resources.ts');
  const { PROJECT_ROOT } = await import('../scripts/lib/image/build.ts');
  const version = (await fs.readJson(path.join(PROJECT_ROOT, 'node_modules/@anthropic-ai/claude-code/package.json'))).version as string;
  const claudeImage = trackImage(`para-claude-npm-test-${RUN_ID}:latest`);
  const tag = trackImage(`para-auth-npm-test-${RUN_ID}:latest`);
  // The version the project already depends on, so npm serves it from its cache.
  const result = await runScript('build-image.ts', ['--tag', tag, '--base-image', BASE_IMAGE, '--claude-version', version, '--json'], {
    env: { HOME: await fakeHome(), PARA_CLAUDE_IMAGE: claudeImage, CLAUDE_CONFIG_DIR: undefined },
  });
  assert.is(result.exitCode, 0, result.stderr);
  const source = (await docker(['image', 'inspect', '--format', '{{index .Config.Labels "dev.para.claude-source"}}', claudeImage])).stdout.trim();
  assert.match(source, new RegExp(`^npm:@anthropic-ai/claude-code-linux-(x64|arm64)@${version.replace(/\./g, '\\.')}$`));
  const inside = await docker([
    'run',
    '--rm',
    '--network',
    'none',
    '--entrypoint',
    'sh',
    claudeImage,
    '-c',
    'claude --version; command -v npm node || echo no-npm',
  ]);
  assert.match(inside.stdout, version);
  assert.match(inside.stdout, 'no-npm');
});

npmRoute.run();

const killed = suite('no credential survives a killed make image');

/** The containers a make image process made its layer in (para-build-<machine>-<pid>-<random>). */
async function buildContainers(pid: number): Promise<string[]> {
  const names = (await docker(['ps', '-a', '--format', '{{.Names}}'])).stdout.split('\n');
  return names.filter((name) => new RegExp(`^para-build-[0-9a-f]{8}-${pid}-[0-9a-f]+$`).test(name));
}

/** Starts `start()` once per trigger and SIGKILLs it the moment the trigger holds; returns the killed pids. */
async function killAt(start: () => ReturnType<typeof execa>, triggers: Array<[string, (pid: number) => Promise<boolean>]>): Promise<number[]> {
  const killedPids: number[] = [];
  for (const [what, reached] of triggers) {
    const child = start();
    const pid = child.pid!;
    const deadline = Date.now() + 120_000;
    let hit = false;
    while (!hit && Date.now() < deadline && child.exitCode === null) {
      hit = await reached(pid);
      if (!hit) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    child.kill('SIGKILL');
    await child;
    assert.ok(hit, `the run never reached the point where ${what}`);
    killedPids.push(pid);
  }
  return killedPids;
}

/** The images whose parent is `parentId`: what a credentials layer on that parent made. */
async function imagesOnTopOf(parentId: string): Promise<string[]> {
  const all = (await docker(['images', '-a', '-q', '--no-trunc'])).stdout.split('\n').filter(Boolean);
  const children: string[] = [];
  for (const id of new Set(all)) {
    if ((await docker(['image', 'inspect', '--format', '{{.Parent}}', id], { allowFailure: true })).stdout.trim() === parentId) children.push(id);
  }
  return children;
}

/** A para-claude of the test's own (a labelled child of the run's), so the images found on top of it are this test's alone. */
async function ownParent(name: string): Promise<{ parent: string; parentId: string }> {
  const { CLAUDE_IMAGE, testClaudeImage } = await import('./support/images.ts');
  const { trackImage, TEST_LABEL: label } = await import('./support/resources.ts');
  await testClaudeImage();
  const context = await tempDir('para-test-parent-');
  await fs.writeFile(path.join(context, 'Dockerfile'), `FROM ${CLAUDE_IMAGE}\nLABEL ${label}=${RUN_ID}-${name}\n`);
  const parent = trackImage(`para-claude-${name}-${RUN_ID}:latest`);
  await docker(['build', '-q', '-t', parent, context], { env: { DOCKER_BUILDKIT: '0' } });
  return { parent, parentId: (await docker(['image', 'inspect', '--format', '{{.Id}}', parent])).stdout.trim() };
}

killed('SIGKILL with the build container made, or with the unverified image tagged, then a run: only the new image holds the login', async () => {
  const { scriptCommand } = await import('./support/images.ts');
  const { trackImage, TEST_LABEL: label } = await import('./support/resources.ts');
  const { parent, parentId } = await ownParent('killed');
  const tag = trackImage(`para-auth-killed-${RUN_ID}:latest`);
  const home = await fakeHome();
  const env = { HOME: home, PARA_CLAUDE_IMAGE: parent, CLAUDE_CONFIG_DIR: undefined, PARA_EXTRA_LABELS: `${label}=${RUN_ID}` };
  const host = os.hostname();
  const triggers: Array<[string, (pid: number) => Promise<boolean>]> = [
    ['the build container exists', async (pid) => (await buildContainers(pid)).length > 0],
    ['the unverified image is tagged', async (pid) => (await docker(['images', '-q', '--filter', `reference=para-build-tmp:${pid}-*`])).stdout.trim() !== ''],
  ];
  const [command, ...entry] = scriptCommand('build-image');
  const killedPids = await killAt(() => execa(command, [...entry, '--tag', tag], { env, reject: false, stdin: 'ignore' }), triggers);
  const run = await runScript('build-image.ts', ['--tag', tag], { env });
  assert.is(run.exitCode, 0, run.stderr);
  assert.match(run.stderr, 'removed the leftover of an interrupted run');
  for (const pid of killedPids) {
    assert.equal(await buildContainers(pid), [], `a build container of the killed run ${pid} survived`);
    assert.is(
      (await docker(['ps', '-aq', '--filter', `label=dev.para.owner=${host}:${pid}`])).stdout.trim(),
      '',
      `a container of the killed run ${pid} survived`,
    );
    assert.is(
      (await docker(['images', '-q', '--filter', `reference=para-build-tmp:${pid}-*`])).stdout.trim(),
      '',
      `a temporary image of the killed run ${pid} survived`,
    );
  }
  // Every image made on top of this test's parent: only the one the tag names may hold the login.
  const current = (await docker(['image', 'inspect', '--format', '{{.Id}}', tag])).stdout.trim();
  const children = await imagesOnTopOf(parentId);
  assert.equal(children, [current], 'another image on top of para-claude survived');
  // The fake HOMEs hold the token on purpose (the source, not a leak).
  const sources = [
    ...FAKE_HOMES,
    ...(await fs.readdir(os.tmpdir())).filter((name) => name.startsWith('para-test-home-')).map((name) => path.join(os.tmpdir(), name)),
  ];
  const leftovers = await filesContaining(os.tmpdir(), FAKE_TOKEN, sources);
  assert.equal(leftovers, [], 'the token is in a host folder');
});

killed('a build that times out, then a run: no container, temporary tag or image of it is left', async () => {
  const { trackImage, TEST_LABEL: label } = await import('./support/resources.ts');
  const { parent, parentId } = await ownParent('timeout');
  const tag = trackImage(`para-auth-timeout-${RUN_ID}:latest`);
  const env = { HOME: await fakeHome(), PARA_CLAUDE_IMAGE: parent, CLAUDE_CONFIG_DIR: undefined, PARA_EXTRA_LABELS: `${label}=${RUN_ID}` };
  // Committing the credentials layer cannot finish in 1 ms: the client is stopped while the engine
  // may still make (and tag) the image after this run has cleaned up.
  const timedOut = await runScript('build-image.ts', ['--tag', tag], { env: { ...env, PARA_BUILD_TIMEOUT_MS: '1' } });
  assert.is(timedOut.exitCode, 1, timedOut.stderr);
  assert.match(timedOut.stderr, /did not finish in time|timed out/);
  assert.not.ok(await imageExists(tag), 'a timed-out build moved the tag');
  const run = await runScript('build-image.ts', ['--tag', tag], { env });
  assert.is(run.exitCode, 0, run.stderr);
  const current = (await docker(['image', 'inspect', '--format', '{{.Id}}', tag])).stdout.trim();
  const children = await imagesOnTopOf(parentId);
  assert.equal(children, [current], 'an image of the timed-out build survived');
  // Only this test's builds (their own parent image): other files build images at the same time.
  assert.is((await docker(['ps', '-aq', '--filter', `ancestor=${parentId}`])).stdout.trim(), '', 'a build container survived');
});

killed('SIGKILL of make login with its container running, its staging folder written, or its image tagged; then make image sweeps it all', async () => {
  const { TSX_LOADER } = await import('./support/images.ts');
  const { PROJECT_ROOT } = await import('../scripts/lib/image/build.ts');
  const { trackImage, TEST_LABEL: label } = await import('./support/resources.ts');
  const { parent, parentId } = await ownParent('login-killed');
  const tag = trackImage(`para-auth-login-killed-${RUN_ID}:latest`);
  const tmp = await tempDir('para-test-login-tmp-');
  const host = os.hostname();
  const staged = async (pid: number) => {
    for (const name of await fs.readdir(tmp)) {
      const owner = await fs.readFile(path.join(tmp, name, '.owner-pid'), 'utf8').catch(() => '');
      if (owner.trim() === String(pid) && (await fs.readdir(path.join(tmp, name))).length > 1) return true;
    }
    return false;
  };
  const triggers: Array<[string, (pid: number) => Promise<boolean>]> = [
    ['the login container runs', async (pid) => (await docker(['ps', '-q', '--filter', `label=dev.para.owner=${host}:${pid}`])).stdout.trim() !== ''],
    ['the staging folder holds the home', staged],
    ['the unverified image is tagged', async (pid) => (await docker(['images', '-q', '--filter', `reference=para-build-tmp:${pid}-*`])).stdout.trim() !== ''],
  ];
  const killedPids = await killAt(
    () =>
      execa(process.execPath, ['--import', TSX_LOADER, path.join(PROJECT_ROOT, 'test/support/login-child.ts'), parent, tag], {
        env: { PARA_EXTRA_LABELS: `${label}=${RUN_ID}`, TMPDIR: tmp, PARA_CLAUDE_IMAGE: parent },
        reject: false,
        stdin: 'ignore',
      }),
    triggers,
  );
  // The next make image (or make login) sweeps what the killed logins left.
  const run = await runScript('build-image.ts', ['--tag', tag], {
    env: { HOME: await fakeHome(), PARA_CLAUDE_IMAGE: parent, CLAUDE_CONFIG_DIR: undefined, TMPDIR: tmp },
  });
  assert.is(run.exitCode, 0, run.stderr);
  for (const pid of killedPids) {
    assert.is(
      (await docker(['ps', '-aq', '--filter', `label=dev.para.owner=${host}:${pid}`])).stdout.trim(),
      '',
      `a container of the killed login ${pid} survived`,
    );
    assert.is((await docker(['images', '-q', '--filter', `reference=para-build-tmp:${pid}-*`])).stdout.trim(), '', `a temporary image of ${pid} survived`);
    assert.equal(await buildContainers(pid), []);
  }
  const current = (await docker(['image', 'inspect', '--format', '{{.Id}}', tag])).stdout.trim();
  const children = await imagesOnTopOf(parentId);
  assert.equal(children, [current], 'an image made by a killed login survived');
  // The child's own stand-in for the interactive login (para-test-login-*) holds the token on purpose.
  const standIns = (await fs.readdir(tmp)).filter((name) => name.startsWith('para-test-login-')).map((name) => path.join(tmp, name));
  const leftovers = await filesContaining(tmp, FAKE_TOKEN, [...FAKE_HOMES, ...standIns]);
  assert.equal(leftovers, [], 'a killed login left the token in a host folder');
});

killed.run();
