import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { imageAuthStatus } from '../scripts/lib/image/auth-status.ts';
import { labels } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { inspectContainer, inspectImage, listContainers } from './support/verbs.ts';
import { ParaError } from '../scripts/lib/errors.ts';
import { PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { commitLogin, LOGIN_TEMPORARY_LABEL, parseLoginFacts, withLoginContainer } from '../scripts/lib/image/login.ts';
import { FAKE_REFRESH, FAKE_TOKEN, runScript, testClaudeImage } from './support/images.ts';
import { RUN_ID, TEST_LABEL, tempDir, trackImage, uniqueName } from './support/resources.ts';
import { shellEngine } from '../scripts/lib/engine/engine.ts';

// Containers the library creates in this process carry the run's label, so the runner removes strays.
process.env.PARA_EXTRA_LABELS = `${TEST_LABEL}=${RUN_ID}`;

const EXPIRES_AT = Date.UTC(2031, 0, 2, 3, 4, 5);

/** This run's login containers, whatever their state. */
async function loginContainers(): Promise<string[]> {
  const found = await listContainers({ labels: { [TEST_LABEL]: RUN_ID, [labels.temporary]: LOGIN_TEMPORARY_LABEL } });
  return found.map((c) => c.Name);
}

async function assertNothingLeft(container: string): Promise<void> {
  assert.is(await inspectContainer(container), undefined, `container ${container} is still there`);
  // The unverified image's tag names this process (the login ran in it).
  const left = (await docker(['images', '-q', '--filter', `reference=para-build-tmp:${process.pid}-*`])).stdout.trim();
  assert.is(left, '', 'a temporary tag of this login is still there');
}

/** Puts a fake subscription login into the container from a private file: no secret in argv or env. */
async function placeFakeLogin(container: string, target = '/home/para/.claude/.credentials.json'): Promise<void> {
  const dir = await tempDir('para-test-login-');
  const file = path.join(dir, 'credentials.json');
  const credentials = {
    claudeAiOauth: { accessToken: FAKE_TOKEN, refreshToken: FAKE_REFRESH, expiresAt: EXPIRES_AT, scopes: ['user:inference'], subscriptionType: 'pro' },
  };
  await fs.writeFile(file, JSON.stringify(credentials), { mode: 0o600 });
  await docker(['cp', file, `${container}:${target}`]);
  await docker(['exec', '-u', 'root', container, 'chown', 'para:para', target]);
  await docker(['exec', '-u', 'root', container, 'chmod', '0600', target]);
}

// ---- without a terminal ------------------------------------------------------------------

const refusal = suite('make login without a terminal');
const refusalTag = trackImage(`para-login-test-${RUN_ID}:refused`);

refusal('exits 2 with the reason and the next step, and creates nothing', async () => {
  const result = await runScript('login.ts', ['--tag', refusalTag], { env: { PARA_CLAUDE_IMAGE: `para-login-test-${RUN_ID}:no-such-claude` } });
  assert.is(result.exitCode, 2);
  assert.match(result.stderr, /needs a terminal/);
  assert.match(result.stderr, /next step: .*TOKEN_FILE/);
  assert.is(result.stdout, '');
  assert.equal(await loginContainers(), []);
  assert.is(await inspectImage(refusalTag), undefined);
});

refusal('with --json prints one failure document whose code names the reason', async () => {
  const result = await runScript('login.ts', ['--json', '--tag', refusalTag], {});
  assert.is(result.exitCode, 2);
  const doc = JSON.parse(result.stdout) as { ok: boolean; error: { code: string; hint: string } };
  assert.is(doc.ok, false);
  assert.is(doc.error.code, 'no-terminal');
  assert.match(doc.error.hint, /setup-token/);
});

refusal('rejects unknown flags and stray arguments; --help needs no terminal', async () => {
  assert.is((await runScript('login.ts', ['--bogus'])).exitCode, 2);
  assert.is((await runScript('login.ts', ['extra'])).exitCode, 2);
  const help = await runScript('login.ts', ['--help']);
  assert.is(help.exitCode, 0);
  assert.match(help.stdout, /--tag IMAGE/);
});

refusal.run();

// ---- the commit and verification path ----------------------------------------------------

const facts = suite('reading login facts');

facts('takes the expiry and plan, nothing else', () => {
  assert.equal(parseLoginFacts('"expiresAt":1700000000000\n"subscriptionType": "max"\n'), { expiresAt: 1700000000000, subscriptionType: 'max' });
  assert.equal(parseLoginFacts(''), { expiresAt: undefined, subscriptionType: undefined });
});

facts.run();

const commit = suite('committing a login made in a container');
const ok = { tag: trackImage(`para-login-test-${RUN_ID}:ok`), container: uniqueName('para-login'), log: [] as string[], claudeImage: '' };

commit.before(async () => {
  ok.claudeImage = await testClaudeImage();
  await withLoginContainer(shellEngine, ok.claudeImage, { name: ok.container, offline: true }, async (container) => {
    await placeFakeLogin(container);
    return commitLogin(shellEngine, container, { tag: ok.tag, claudeImage: ok.claudeImage, log: (line) => ok.log.push(line) });
  });
});

commit('the image reports loggedIn true in a fresh container with the real claude CLI', async () => {
  const status = await imageAuthStatus(shellEngine, ok.tag);
  assert.is(status.loggedIn, true);
  assert.is(status.authMethod, 'claude.ai');
  assert.is(status.subscriptionType, 'pro');
});

commit('the image carries the facts of the login as labels, and no temporary or secret label', async () => {
  const l = (await inspectImage(ok.tag))?.Config.Labels ?? {};
  assert.is(l[labels.managedBy], 'para');
  assert.is(l[labels.authMethod], 'claude.ai');
  assert.is(l[labels.credentialsSource], 'login');
  assert.is(l[labels.credentialsExpiresAt], new Date(EXPIRES_AT).toISOString());
  assert.is(l[labels.subscriptionType], 'pro');
  assert.ok(l[labels.builtAt]);
  assert.is(l[labels.temporary], undefined);
});

commit('the image keeps the user, home, working folder and command of para-claude', async () => {
  const config = JSON.parse((await docker(['image', 'inspect', '--format', '{{json .Config}}', ok.tag])).stdout) as {
    User: string;
    Env: string[];
    WorkingDir: string;
    Cmd: string[];
  };
  assert.is(config.User, 'para');
  assert.ok(config.Env.includes('HOME=/home/para'));
  assert.is(config.WorkingDir, '/home/para');
  assert.equal(config.Cmd, ['claude']);
});

commit('the credentials file inside is 0600 and owned by para', async () => {
  const result = await docker([
    'run',
    '--rm',
    '--network',
    'none',
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    ok.tag,
    'stat',
    '-c',
    '%a %U',
    '/home/para/.claude/.credentials.json',
  ]);
  assert.is(result.stdout.trim(), '600 para');
});

commit('the fake token is absent from docker inspect, docker history and the progress output', async () => {
  for (const secret of [FAKE_TOKEN, FAKE_REFRESH]) {
    assert.not.ok((await docker(['inspect', ok.tag])).stdout.includes(secret), 'docker inspect shows the token');
    assert.not.ok((await docker(['history', '--no-trunc', ok.tag])).stdout.includes(secret), 'docker history shows the token');
    assert.not.ok(ok.log.join('\n').includes(secret));
  }
});

commit('the throwaway container and the temporary tags are gone', async () => {
  await assertNothingLeft(ok.container);
});

commit.run();

// ---- failures and cleanup ----------------------------------------------------------------

const failure = suite('a failed login');
const failed = { tag: trackImage(`para-login-test-${RUN_ID}:kept`), previousId: '', claudeImage: '' };

failure.before(async () => {
  failed.claudeImage = await testClaudeImage();
  await docker(['tag', failed.claudeImage, failed.tag]);
  failed.previousId = (await inspectImage(failed.tag))!.Id;
});

failure('without a login the verification fails, the previous image stays, nothing is left behind', async () => {
  const container = uniqueName('para-login');
  let error: unknown;
  try {
    await withLoginContainer(shellEngine, failed.claudeImage, { name: container, offline: true }, (name) =>
      commitLogin(shellEngine, name, { tag: failed.tag, claudeImage: failed.claudeImage }),
    );
  } catch (caught) {
    error = caught;
  }
  assert.instance(error, ParaError);
  assert.is((error as ParaError).code, 'login-failed');
  assert.match((error as ParaError).hint ?? '', /make login again/);
  assert.is((await inspectImage(failed.tag))?.Id, failed.previousId);
  await assertNothingLeft(container);
});

failure('a login that does not survive into the image fails the image check and keeps the previous image', async () => {
  const container = uniqueName('para-login');
  let error: unknown;
  try {
    await withLoginContainer(shellEngine, failed.claudeImage, { name: container, offline: true }, async (name) => {
      // The container sees the login through the link; the image gets only a dangling link.
      await placeFakeLogin(name, '/tmp/credentials.json');
      await docker(['exec', name, 'ln', '-s', '/tmp/credentials.json', '/home/para/.claude/.credentials.json']);
      return commitLogin(shellEngine, name, { tag: failed.tag, claudeImage: failed.claudeImage });
    });
  } catch (caught) {
    error = caught;
  }
  assert.instance(error, ParaError);
  assert.is((error as ParaError).code, 'verification-failed');
  assert.is((await inspectImage(failed.tag))?.Id, failed.previousId);
  await assertNothingLeft(container);
});

failure('an error before the commit still removes the container', async () => {
  const container = uniqueName('para-login');
  let error: unknown;
  try {
    await withLoginContainer(shellEngine, failed.claudeImage, { name: container, offline: true }, async () => {
      throw new Error('the login was abandoned');
    });
  } catch (caught) {
    error = caught;
  }
  assert.match(String(error), /abandoned/);
  await assertNothingLeft(container);
});

failure('SIGTERM while the container is up removes it, then the process dies of SIGTERM', async () => {
  const container = uniqueName('para-login');
  const dir = await tempDir('para-test-login-');
  const fixture = path.join(dir, 'hold.mts');
  await fs.writeFile(
    fixture,
    [
      `import { withLoginContainer } from ${JSON.stringify(path.join(PROJECT_ROOT, 'scripts/lib/image/login.ts'))};`,
      `import { shellEngine } from ${JSON.stringify(path.join(PROJECT_ROOT, 'scripts/lib/engine/engine.ts'))};`,
      'setInterval(() => undefined, 1000);',
      `await withLoginContainer(shellEngine, ${JSON.stringify(failed.claudeImage)}, { name: ${JSON.stringify(container)}, offline: true }, async () => {`,
      "  process.stdout.write('ready\\n');",
      '  await new Promise(() => undefined);',
      '});',
    ].join('\n'),
  );
  const child = execa(process.execPath, ['--import', 'tsx', fixture], {
    cwd: PROJECT_ROOT,
    env: { PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
    reject: false,
    timeout: 120_000,
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve();
    });
    child.then((result) => reject(new Error(`the fixture ended early: ${String(result.stderr)}`)), reject);
  });
  assert.ok(await inspectContainer(container), 'the container should be up before the signal');
  child.kill('SIGTERM');
  const result = await child;
  assert.is(result.signal, 'SIGTERM', `expected death by SIGTERM, got ${String(result.exitCode)}: ${String(result.stderr)}`);
  await assertNothingLeft(container);
});

failure.run();
