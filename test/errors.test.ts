// Errors name the real cause: a failed pull is not a dead daemon, a missing docker context is
// not a missing image, a bad PARA_* value is a usage error, a locked Keychain is not "no login".
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { config, extraLabels } from '../scripts/lib/config.ts';
import { discoverCredentials, keychainOutcome } from '../scripts/lib/image/credentials.ts';
import { classifyConnectionFailure, docker, DockerError } from '../scripts/lib/engine/docker.ts';
import { inspectContainer, inspectImage, inspectVolume } from './support/verbs.ts';
import { ParaError, UsageError } from '../scripts/lib/errors.ts';
import { tempRepo } from './support/doctor.ts';
import { FAKE_TOKEN, runScript } from './support/images.ts';
import { tempDir, uniqueName } from './support/resources.ts';

// Real texts, as docker 28 against engine 20.10 prints them.
const REGISTRY_DOWN = 'Error response from daemon: Get "https://registry.invalid/v2/": dial tcp: lookup registry.invalid on 192.0.2.53:53: no such host';
const RUN_PULL_DOWN = `Unable to find image 'para-nonexistent-x:none' locally\ndocker: ${REGISTRY_DOWN}\n\nRun 'docker run --help' for more information`;
const RUN_PULL_DENIED =
  "Unable to find image 'para-nonexistent-x:none' locally\ndocker: Error response from daemon: pull access denied for para-nonexistent-x, repository does not exist or may require 'docker login': denied: requested access to the resource is denied\n\nRun 'docker run --help' for more information";
const CONTEXT_NOT_FOUND =
  'Failed to initialize: unable to resolve docker endpoint: context "nope": context not found: open /root/.docker/contexts/meta/0123/meta.json: no such file or directory';

/** A folder with a `docker` that prints `stderr` and exits with `exitCode` for every call. */
async function fakeDocker(stderr: string, exitCode: number): Promise<Record<string, string>> {
  const dir = await tempDir('para-fake-docker-');
  const script = ['#!/bin/sh', `printf '%s\\n' '${stderr.replace(/'/g, `'\\''`)}' >&2`, `exit ${exitCode}`].join('\n');
  await fs.writeFile(path.join(dir, 'docker'), `${script}\n`, { mode: 0o755 });
  return { PATH: `${dir}:${process.env.PATH}` };
}

async function rejection(promise: Promise<unknown>): Promise<DockerError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DockerError) return error;
    throw error;
  }
  throw new assert.Assertion({ message: 'expected a DockerError', operator: 'throws', generated: false, actual: 'resolved', expects: 'DockerError' });
}

/** Sets an environment variable for the length of `body` (the wrappers read process.env). */
async function withEnv<T>(name: string, value: string, body: () => Promise<T>): Promise<T> {
  const before = process.env[name];
  process.env[name] = value;
  try {
    return await body();
  } finally {
    if (before === undefined) delete process.env[name];
    else process.env[name] = before;
  }
}

// ---- pulls -------------------------------------------------------------------------------

const pulls = suite('a failed image pull');

pulls('is never read as a connection failure, whatever the registry error says', () => {
  for (const stderr of [
    REGISTRY_DOWN,
    RUN_PULL_DOWN,
    RUN_PULL_DENIED,
    'Error response from daemon: Head "https://images.invalid/v2/x/manifests/1": dial tcp 192.0.2.1:443: i/o timeout',
  ]) {
    assert.is(classifyConnectionFailure(stderr, {}), undefined, stderr);
  }
});

pulls('leaves the real connection failures recognised', () => {
  assert.is(classifyConnectionFailure('Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?', {}), 'daemon-down');
  assert.is(
    classifyConnectionFailure('docker: Cannot connect to the Docker daemon at tcp://127.0.0.1:1. Is the docker daemon running?', {}),
    'host-unreachable',
  );
  assert.is(
    classifyConnectionFailure('error during connect: Get "http://docker.example.com/v1.50/version": command [ssh ...] has exited with exit status 255', {
      DOCKER_HOST: 'ssh://x',
    }),
    'host-unreachable',
  );
  assert.is(
    classifyConnectionFailure(
      'failed to connect to the docker API at unix:///x.sock; check if the path is correct and if the daemon is running: dial unix /x.sock: connect: no such file or directory',
      {},
    ),
    'daemon-down',
  );
  assert.is(
    classifyConnectionFailure(
      'permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get "http://%2Fvar%2Frun%2Fdocker.sock/v1.50/version": dial unix /var/run/docker.sock: connect: permission denied',
      {},
    ),
    'permission-denied',
  );
  assert.is(classifyConnectionFailure(CONTEXT_NOT_FOUND, {}), 'context-missing');
});

pulls('an unreachable registry under docker run becomes pull-failed, naming the image and keeping stderr', async () => {
  const error = await rejection(docker(['run', '--rm', 'para-nonexistent-x:none', 'true'], { env: await fakeDocker(RUN_PULL_DOWN, 125) }));
  assert.is(error.kind, 'pull-failed');
  assert.is(error.code, 'docker-pull-failed');
  assert.match(error.message, 'the image para-nonexistent-x:none is not present locally and could not be pulled');
  assert.match(error.message, 'no such host');
  assert.match(error.hint ?? '', 'no registry could be reached');
  assert.match(error.hint ?? '', 'make image');
  assert.match(error.stderr, "Unable to find image 'para-nonexistent-x:none' locally");
});

pulls('a refused pull says to check the name, even when the caller allows failure', async () => {
  const error = await rejection(
    docker(['run', '--rm', 'para-nonexistent-x:none', 'true'], { allowFailure: true, env: await fakeDocker(RUN_PULL_DENIED, 125) }),
  );
  assert.is(error.kind, 'pull-failed');
  assert.match(error.message, 'pull access denied for para-nonexistent-x');
  assert.match(error.hint ?? '', 'check the image name (para-nonexistent-x:none)');
});

pulls('docker pull without allowFailure is pull-failed; with it the caller gets the result', async () => {
  const env = await fakeDocker(REGISTRY_DOWN, 1);
  const error = await rejection(docker(['pull', 'para-nonexistent-x:none'], { env }));
  assert.is(error.kind, 'pull-failed');
  assert.match(error.message, 'para-nonexistent-x:none');
  assert.is((await docker(['pull', 'para-nonexistent-x:none'], { env, allowFailure: true })).exitCode, 1);
});

pulls("a container's own exit code and output are not a pull failure", async () => {
  const result = await docker(['run', '--rm', 'img', 'sh'], { allowFailure: true, env: await fakeDocker(REGISTRY_DOWN, 3) });
  assert.is(result.exitCode, 3);
});

pulls('with the real engine, a surely-missing image is pull-failed, not daemon-down', async () => {
  const image = `${uniqueName('para-nonexistent')}:none`;
  const error = await rejection(docker(['run', '--rm', '--pull', 'missing', image, 'true'], { timeoutMs: 120_000 }));
  assert.is(error.kind, 'pull-failed', `${error.kind}: ${error.message}\n${error.stderr}`);
  assert.match(error.message, image);
});

pulls.run();

// ---- contexts and "not found" probes -----------------------------------------------------

const probes = suite('not-found probes');

probes('a missing DOCKER_CONTEXT is named, with the fix, by every inspect (real CLI)', async () => {
  const context = uniqueName('para-missing');
  await withEnv('DOCKER_CONTEXT', context, async () => {
    for (const probe of [inspectImage, inspectContainer, inspectVolume]) {
      const error = await rejection(probe('para-anything'));
      assert.is(error.kind, 'context-missing', `${probe.name}: ${error.kind} ${error.message}`);
      assert.is(error.message, `the docker context "${context}" named by DOCKER_CONTEXT does not exist`);
      assert.match(error.hint ?? '', 'docker context ls');
      assert.match(error.hint ?? '', 'unset DOCKER_CONTEXT');
    }
  });
});

probes('a missing image, container and volume read as absent (real engine)', async () => {
  const name = uniqueName('para-absent');
  assert.is(await inspectImage(`${name}:none`), undefined);
  assert.is(await inspectContainer(name), undefined);
  assert.is(await inspectVolume(name), undefined);
});

probes("docker's exact not-found texts are absent; any other failure is rethrown", async () => {
  const cases: Array<[string, () => Promise<unknown>]> = [
    ['Error response from daemon: no such image: x: No such image: x:latest', () => inspectImage('x')],
    ['Error: No such image: x:latest', () => inspectImage('x')],
    ['Error response from daemon: No such container: x', () => inspectContainer('x')],
    ['Error: No such object: x', () => inspectContainer('x')],
    ['Error response from daemon: get x: no such volume', () => inspectVolume('x')],
  ];
  for (const [stderr, probe] of cases) {
    const absent = await withEnv('PATH', (await fakeDocker(stderr, 1)).PATH, probe);
    assert.is(absent, undefined, stderr);
  }
  for (const [stderr, probe] of [
    ['Error response from daemon: manifest for x not found', () => inspectImage('x')],
    ['Error response from daemon: container x: not found in this namespace', () => inspectContainer('x')],
    ['Error response from daemon: volume plugin x not found', () => inspectVolume('x')],
  ] as Array<[string, () => Promise<unknown>]>) {
    const error = await rejection(withEnv('PATH', (await fakeDocker(stderr, 1)).PATH, probe));
    assert.is(error.kind, 'command-failed', stderr);
    assert.match(error.message, stderr);
  }
});

probes.run();

// ---- configuration -----------------------------------------------------------------------

const settings = suite('configuration from the environment');

settings('is read when used, and a bad value is a usage error naming the variable and the form', async () => {
  const cases: Array<[string, string, () => unknown, string]> = [
    ['PARA_DOCKER_TIMEOUT_MS', 'abc', () => config.timeouts.dockerQuickMs, 'positive whole number of milliseconds'],
    ['PARA_VERIFY_TIMEOUT_MS', '0', () => config.timeouts.verifyMs, 'positive whole number of milliseconds'],
    ['PARA_BUILD_TIMEOUT_MS', '1.5', () => config.timeouts.buildMs, 'positive whole number of milliseconds'],
    ['PARA_PIDS_LIMIT', '-1', () => config.limits.pidsLimit, 'positive whole number of processes'],
    ['PARA_SNAPSHOT_MAX_FILE_MB', 'big', () => config.snapshot.maxFileBytes, 'positive whole number of megabytes'],
    ['PARA_SNAPSHOT_TIMEOUT_MS', '10s', () => config.snapshot.timeoutMs, 'positive whole number of milliseconds'],
    ['PARA_MEMORY', 'lots', () => config.limits.memory, 'a size such as 4g'],
    ['PARA_CPUS', '0', () => config.limits.cpus, 'a positive number of CPUs'],
    ['PARA_EXTRA_LABELS', 'novalue', () => extraLabels(), 'key=value'],
  ];
  for (const [name, value, read, form] of cases) {
    await withEnv(name, value, async () => {
      try {
        read();
      } catch (error) {
        assert.instance(error, UsageError, name);
        assert.is((error as UsageError).exitCode, 2);
        assert.match((error as Error).message, name);
        assert.match((error as Error).message, form);
        return;
      }
      assert.unreachable(`${name}=${value} was accepted`);
    });
  }
  await withEnv('PARA_DOCKER_TIMEOUT_MS', '1234', async () => assert.is(config.timeouts.dockerQuickMs, 1234));
  await withEnv('PARA_MEMORY', '512m', async () => assert.is(config.limits.memory, '512m'));
  await withEnv('PARA_CPUS', '0.5', async () => assert.is(config.limits.cpus, '0.5'));
});

settings('a bad PARA_DOCKER_TIMEOUT_MS makes list exit 2 with a usage error, no stack, and ok:false JSON', async () => {
  const repo = await tempRepo();
  const result = await runScript('list.ts', ['--json'], { cwd: repo, env: { PARA_DOCKER_TIMEOUT_MS: 'abc' } });
  assert.is(result.exitCode, 2, result.stderr);
  assert.match(result.stderr, 'error: PARA_DOCKER_TIMEOUT_MS must be a positive whole number of milliseconds, got "abc"');
  assert.match(result.stderr, 'next step: set PARA_DOCKER_TIMEOUT_MS to a number such as 30000, or unset it');
  assert.not.match(result.stderr, /^\s+at /m);
  const document = JSON.parse(result.stdout);
  assert.is(document.ok, false);
  assert.is(document.error.code, 'usage');
  assert.match(document.error.message, 'PARA_DOCKER_TIMEOUT_MS');
});

settings.run();

// ---- the macOS Keychain ------------------------------------------------------------------

const keychain = suite('the macOS Keychain');

/** A home, and an env whose PATH starts with a `security` that prints `stderr` and exits `exitCode`. */
async function fakeSecurity(stderr: string, exitCode: number, stdout = ''): Promise<{ home: string; env: NodeJS.ProcessEnv }> {
  const home = await tempDir('para-keychain-home-');
  const bin = await tempDir('para-fake-security-');
  const script = ['#!/bin/sh', `printf '%s' '${stdout}'`, `printf '%s\\n' '${stderr}' >&2`, `exit ${exitCode}`].join('\n');
  await fs.writeFile(path.join(bin, 'security'), `${script}\n`, { mode: 0o755 });
  return { home, env: { PATH: `${bin}:${process.env.PATH}` } };
}

async function discoveryError(stderr: string, exitCode: number, stdout = ''): Promise<ParaError> {
  const { home, env } = await fakeSecurity(stderr, exitCode, stdout);
  try {
    await discoverCredentials({ home, env, platform: 'darwin' });
  } catch (error) {
    assert.instance(error, ParaError);
    return error as ParaError;
  }
  throw new assert.Assertion({ message: 'expected a ParaError', operator: 'throws', generated: false, actual: 'resolved', expects: 'ParaError' });
}

keychain('exit codes and texts are told apart', () => {
  assert.is(keychainOutcome(0, ''), 'found');
  assert.is(keychainOutcome(44, 'security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain.'), 'not-found');
  assert.is(keychainOutcome(36, ''), 'locked');
  assert.is(keychainOutcome(51, ''), 'locked');
  assert.is(keychainOutcome(1, 'security: SecKeychainItemCopyContent: User interaction is not allowed.'), 'locked');
  assert.is(keychainOutcome(1, 'The user name or passphrase you entered is not correct.'), 'locked');
  assert.is(keychainOutcome(1, 'security: something else'), 'failed');
});

keychain('a missing item is still "no credentials found"', async () => {
  const error = await discoveryError('security: SecKeychainSearchCopyNext: The specified item could not be found in the keychain.', 44);
  assert.is(error.code, 'credentials-not-found');
});

keychain('a locked keychain says so and how to unlock it, for every way security reports it', async () => {
  for (const [stderr, exitCode] of [
    ['security: SecKeychainItemCopyContent: User interaction is not allowed.', 36],
    ['security: SecKeychainItemCopyContent: The user name or passphrase you entered is not correct.', 51],
    ['security: SecKeychainItemCopyContent: User interaction is not allowed.', 1],
  ] as Array<[string, number]>) {
    const error = await discoveryError(stderr, exitCode);
    assert.is(error.code, 'keychain-locked', stderr);
    assert.match(error.message, 'the macOS login keychain is locked');
    assert.match(error.message, stderr);
    assert.match(error.hint ?? '', 'security unlock-keychain ~/Library/Keychains/login.keychain-db');
    assert.match(error.hint ?? '', "log in on the Mac's screen");
  }
});

keychain('a locked keychain wins over an older credentials file, and never echoes stdout', async () => {
  const { home, env } = await fakeSecurity('security: User interaction is not allowed.', 36, FAKE_TOKEN);
  await fs.outputFile(path.join(home, '.claude/.credentials.json'), JSON.stringify({ claudeAiOauth: { accessToken: FAKE_TOKEN } }));
  const error = await discoverCredentials({ home, env, platform: 'darwin' }).then(
    () => undefined,
    (e: unknown) => e as ParaError,
  );
  assert.is(error?.code, 'keychain-locked');
  assert.not.match(`${error?.message} ${error?.hint}`, 'PARAFAKE');
});

keychain('any other security failure is its own error with the command and its stderr', async () => {
  const error = await discoveryError('security: SecKeychainSearchCopyNext: A default keychain could not be found.', 50);
  assert.is(error.code, 'keychain-failed');
  assert.match(
    error.message,
    'security find-generic-password -s "Claude Code-credentials" -w exited 50: security: SecKeychainSearchCopyNext: A default keychain could not be found.',
  );
});

keychain.run();
