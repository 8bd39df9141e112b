import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { discoverCredentials, filterClaudeJson, KEYCHAIN_SERVICE } from '../scripts/lib/image/credentials.ts';
import { ParaError } from '../scripts/lib/errors.ts';
import { FAKE_TOKEN } from './support/images.ts';
import { tempDir } from './support/resources.ts';

const login = (extra: Record<string, unknown> = {}) =>
  JSON.stringify({
    claudeAiOauth: { accessToken: FAKE_TOKEN, refreshToken: 'r', expiresAt: 4102444800000, scopes: ['user:inference'], subscriptionType: 'max', ...extra },
  });

async function homeWith(files: Record<string, string>): Promise<string> {
  const home = await tempDir('para-cred-');
  for (const [file, content] of Object.entries(files)) {
    await fs.mkdir(path.dirname(path.join(home, file)), { recursive: true });
    await fs.writeFile(path.join(home, file), content, { mode: 0o600 });
  }
  return home;
}

async function expectError(promise: Promise<unknown>): Promise<ParaError> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, ParaError);
    return error as ParaError;
  }
  throw new assert.Assertion({ message: 'expected a ParaError', operator: 'throws', generated: false, actual: 'resolved', expects: 'ParaError' });
}

const discovery = suite('credential discovery');

discovery('the Linux credentials file is found and the expiry and subscription are read', async () => {
  const home = await homeWith({ '.claude/.credentials.json': login() });
  const found = await discoverCredentials({ home, env: {}, platform: 'linux' });
  assert.is(found.kind, 'subscription');
  assert.is(found.authMethod, 'claude.ai');
  assert.is(found.expiresAt, 4102444800000);
  assert.is(found.subscriptionType, 'max');
  assert.is(found.source, path.join(home, '.claude/.credentials.json'));
  assert.ok(found.files.some((f) => f.path === '.claude/.credentials.json' && f.content.includes(FAKE_TOKEN)));
});

discovery('CLAUDE_CONFIG_DIR is where the login and .claude.json are read from', async () => {
  const home = await homeWith({
    'elsewhere/.credentials.json': login({ subscriptionType: 'pro' }),
    'elsewhere/.claude.json': '{"userID":"u1"}',
    '.claude.json': '{"userID":"wrong"}',
  });
  const found = await discoverCredentials({ home, env: { CLAUDE_CONFIG_DIR: path.join(home, 'elsewhere') }, platform: 'linux' });
  assert.is(found.subscriptionType, 'pro');
  const claudeJson = JSON.parse(found.files.find((f) => f.path === '.claude.json')!.content);
  assert.is(claudeJson.userID, 'u1');
});

discovery('on macOS the Keychain item is read through the security CLI', async () => {
  const home = await homeWith({});
  const bin = await tempDir('para-fake-bin-');
  const record = path.join(bin, 'calls');
  await fs.writeFile(path.join(bin, 'security'), `#!/bin/sh\nprintf '%s\\n' "$@" > "${record}"\nprintf '%s' '${login({ subscriptionType: 'team' })}'\n`, {
    mode: 0o755,
  });
  const found = await discoverCredentials({ home, env: { PATH: `${bin}:${process.env.PATH}` }, platform: 'darwin' });
  assert.is(found.subscriptionType, 'team');
  assert.match(found.source, 'Keychain');
  assert.equal((await fs.readFile(record, 'utf8')).trim().split('\n'), ['find-generic-password', '-s', KEYCHAIN_SERVICE, '-w']);
});

discovery('on macOS without a Keychain item the credentials file is used', async () => {
  const home = await homeWith({ '.claude/.credentials.json': login({ subscriptionType: 'pro' }) });
  const bin = await tempDir('para-fake-bin-');
  await fs.writeFile(path.join(bin, 'security'), '#!/bin/sh\necho "security: The specified item could not be found in the keychain." >&2\nexit 44\n', {
    mode: 0o755,
  });
  const found = await discoverCredentials({ home, env: { PATH: `${bin}:${process.env.PATH}` }, platform: 'darwin' });
  assert.is(found.source, path.join(home, '.claude/.credentials.json'));
});

discovery('a token file wins and becomes an oauth_token settings file with an estimated expiry', async () => {
  const home = await homeWith({ '.claude/.credentials.json': login(), 'token.txt': `${FAKE_TOKEN}\n` });
  const found = await discoverCredentials({ home, env: {}, platform: 'linux', tokenFile: path.join(home, 'token.txt') });
  assert.is(found.kind, 'oauth-token');
  assert.is(found.authMethod, 'oauth_token');
  assert.ok(found.expiryEstimated);
  const settings = JSON.parse(found.files.find((f) => f.path === '.claude/settings.json')!.content);
  assert.is(settings.env.CLAUDE_CODE_OAUTH_TOKEN, FAKE_TOKEN);
  assert.not.ok(found.files.some((f) => f.path === '.claude/.credentials.json'));
});

discovery('a token can be read from standard input with -', async () => {
  const found = await discoverCredentials({ home: await homeWith({}), env: {}, platform: 'linux', tokenFile: '-', readStdin: async () => `${FAKE_TOKEN}\n` });
  assert.is(found.source, 'standard input');
});

discovery('an API key file becomes an api_key settings file, pre-approved', async () => {
  const key = 'sk-ant-api03-PARAFAKEKEY0123456789abcdef';
  const home = await homeWith({ 'key.txt': key });
  const found = await discoverCredentials({ home, env: {}, platform: 'linux', apiKeyFile: path.join(home, 'key.txt') });
  assert.is(found.authMethod, 'api_key');
  const claudeJson = JSON.parse(found.files.find((f) => f.path === '.claude.json')!.content);
  assert.equal(claudeJson.customApiKeyResponses.approved, [key.slice(-20)]);
});

discovery('nothing found names every place looked at and the three ways out', async () => {
  const home = await homeWith({});
  const error = await expectError(discoverCredentials({ home, env: {}, platform: 'darwin' }));
  assert.is(error.code, 'credentials-not-found');
  assert.match(error.message, 'Keychain');
  assert.match(error.message, path.join(home, '.claude/.credentials.json'));
  assert.match(error.hint ?? '', 'setup-token');
  assert.match(error.hint ?? '', 'make login');
  assert.match(error.hint ?? '', '/login');
});

discovery('malformed credentials name the file and never echo its content', async () => {
  for (const content of [
    `{"claudeAiOauth": ${FAKE_TOKEN}`,
    JSON.stringify({ other: FAKE_TOKEN }),
    JSON.stringify({ claudeAiOauth: { refreshToken: FAKE_TOKEN } }),
  ]) {
    const home = await homeWith({ '.claude/.credentials.json': content });
    const error = await expectError(discoverCredentials({ home, env: {}, platform: 'linux' }));
    assert.is(error.code, 'credentials-malformed');
    assert.match(error.message, path.join(home, '.claude/.credentials.json'));
    assert.not.match(`${error.message} ${error.hint}`, 'PARAFAKE');
  }
});

discovery('an empty or multi-word token file is refused, and an API key given as a token is redirected', async () => {
  const home = await homeWith({ empty: '\n', two: 'a b', api: 'sk-ant-api03-xyz' });
  assert.is((await expectError(discoverCredentials({ home, env: {}, tokenFile: path.join(home, 'empty') }))).code, 'credentials-malformed');
  assert.is((await expectError(discoverCredentials({ home, env: {}, tokenFile: path.join(home, 'two') }))).code, 'credentials-malformed');
  assert.match((await expectError(discoverCredentials({ home, env: {}, tokenFile: path.join(home, 'api') }))).hint ?? '', '--api-key-file');
  assert.is((await expectError(discoverCredentials({ home, env: {}, tokenFile: path.join(home, 'missing') }))).code, 'credentials-missing-file');
});

discovery.run();

const filter = suite('.claude.json filter');

filter('keeps onboarding and account keys, drops project history and MCP servers', () => {
  const out = filterClaudeJson({
    hasCompletedOnboarding: false,
    userID: 'u',
    oauthAccount: { emailAddress: 'a@b' },
    theme: 'dark',
    projects: { '/home/x/p': { mcpServers: {} } },
    mcpServers: { s: {} },
    history: [],
    tipsHistory: {},
  });
  assert.equal(Object.keys(out).sort(), ['hasCompletedOnboarding', 'oauthAccount', 'theme', 'userID']);
  assert.is(out.hasCompletedOnboarding, true);
});

filter('anything that is not an object yields only the onboarding flag', () => {
  assert.equal(filterClaudeJson(null), { hasCompletedOnboarding: true });
  assert.equal(filterClaudeJson([1, 2]), { hasCompletedOnboarding: true });
});

filter.run();

const shapes = suite('token and key shapes');

shapes('a token file or key file that cannot be a setup-token or an API key gets a warning that never shows the value', async () => {
  const home = await tempDir('para-test-home-');
  const bad = path.join(home, 'bad');
  await fs.writeFile(bad, 'notatoken\n');
  const token = await discoverCredentials({ home, env: {}, platform: 'linux', tokenFile: bad });
  assert.match(token.shapeWarning ?? '', 'does not look like a claude setup-token');
  assert.not.match(token.shapeWarning ?? '', 'notatoken');
  const key = await discoverCredentials({ home, env: {}, platform: 'linux', apiKeyFile: bad });
  assert.match(key.shapeWarning ?? '', 'does not look like an Anthropic API key');
  const good = path.join(home, 'good');
  await fs.writeFile(good, `${FAKE_TOKEN}\n`);
  assert.is((await discoverCredentials({ home, env: {}, platform: 'linux', tokenFile: good })).shapeWarning, undefined);
});

shapes.run();
