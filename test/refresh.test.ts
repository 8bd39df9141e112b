// A subscription login expiring under three running sessions, on the real engine with the real
// claude CLI, in a fake internet of the test's own: an API that accepts only the current access
// token, and an OAuth token endpoint that rotates refresh tokens and revokes the whole family when a
// used one comes back (as the real service does). The broker follows the host: the host's claude
// (the real CLI, with the host's HOME) is the one that refreshes, once; para brings its renewed
// login to the broker at the next list; the sessions keep working and never refresh anything.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { refreshContainerName, renewalDue, renewedByPara } from '../scripts/lib/broker/refresh.ts';
import type { ImageInfo } from '../scripts/lib/engine/engine.ts';
import { labels } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { shellEngine } from '../scripts/lib/engine/engine.ts';
import { commitLogin, withLoginContainer } from '../scripts/lib/image/login.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { buildAuthImage, CLAUDE_IMAGE, fakeHome, runScript, scriptCommand, testClaudeImage, testEgressImage } from './support/images.ts';
import { certsFolder, netImage, runServer, testNetwork } from './support/internet.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { loudly, onCleanup, RUN_ID, TEST_LABEL, tempDir, trackImage, uniqueName } from './support/resources.ts';

/**
 * The fake API and token endpoint (one handler, state shared in /state): access tokens are valid
 * or expired as the state says; a current refresh token is rotated once; a used one revokes all.
 */
const HANDLER = `#!/usr/bin/perl
use strict; use Fcntl qw(:flock); $| = 1;
my $line = <STDIN>; $line =~ s/\\r?\\n$//;
my ($len, @h) = (0);
while (my $x = <STDIN>) { $x =~ s/\\r?\\n$//; last if $x eq ''; push @h, $x; $len = $1 if $x =~ /^content-length:\\s*(\\d+)/i; }
my $body = ''; read(STDIN, $body, $len) if $len;
my ($auth) = map { /^authorization:\\s*Bearer\\s+(\\S+)/i ? $1 : () } @h;
open(my $lock, '>>', '/state/lock'); flock($lock, LOCK_EX);
my %s; if (open(my $f, '<', '/state/state')) { while (<$f>) { chomp; my ($k, $v) = split / /, $_, 2; $s{$k} = $v; } close $f; }
sub save { open(my $f, '>', '/state/state.new'); print $f "$_ $s{$_}\\n" for sort keys %s; close $f; rename '/state/state.new', '/state/state'; }
open(my $log, '>>', '/state/requests.log'); print $log "$line auth=" . ($auth // '-') . "\\n"; close $log;
sub reply { my ($code, $text, $type) = @_; print "HTTP/1.1 $code\\r\\nContent-Type: " . ($type // 'application/json') . "\\r\\nContent-Length: " . length($text) . "\\r\\nConnection: close\\r\\n\\r\\n$text"; exit 0; }
if ($line =~ m{^POST /v1/oauth/token}) {
  my ($rt) = $body =~ /"refresh_token"\\s*:\\s*"([^"]+)"/;
  open(my $r, '>>', '/state/refresh.log'); print $r (($rt // '-') . "\\n"); close $r;
  reply('400 Bad Request', '{"error":"invalid_grant","error_description":"the token family is revoked"}') if $s{revoked};
  my $state = defined $rt ? $s{"rt:$rt"} : undef;
  if (defined $state && $state eq 'current') {
    my $n = ($s{n} // 1) + 1; $s{n} = $n;
    $s{"rt:$rt"} = 'used'; $s{"rt:PARAFAKE-R$n"} = 'current'; $s{"at:A$n"} = 'valid'; save();
    reply('200 OK', qq({"token_type":"Bearer","access_token":"sk-ant-oat01-PARAFAKE-A$n","refresh_token":"PARAFAKE-R$n","expires_in":3600,"scope":"user:inference user:profile"}));
  }
  if (defined $state) { $s{revoked} = 1; save(); }
  reply('400 Bad Request', '{"error":"invalid_grant","error_description":"unknown or reused refresh token"}');
}
if ($line =~ m{^POST /v1/messages}) {
  my ($id) = ($auth // '') =~ /^sk-ant-oat01-PARAFAKE-(A\\d+)$/;
  reply('401 Unauthorized', '{"type":"error","error":{"type":"authentication_error","message":"OAuth token has expired"}}')
    if $s{revoked} || !defined $id || ($s{"at:$id"} // '') ne 'valid';
  my $out = '';
  sub ev { $out .= "event: $_[0]\\ndata: $_[1]\\n\\n"; }
  ev('message_start', '{"type":"message_start","message":{"id":"msg_r","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}');
  ev('content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}');
  ev('content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"answered-with-' . $id . '"}}');
  ev('content_block_stop', '{"type":"content_block_stop","index":0}');
  ev('message_delta', '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}');
  ev('message_stop', '{"type":"message_stop"}');
  reply('200 OK', $out, 'text/event-stream');
}
reply('200 OK', '{}');
`;

/** No file any of these sessions can read (as root in its container) holds a fake access or refresh token. */
async function assertNoToken(root: string, names: string[]): Promise<void> {
  for (const name of names) {
    const container = sessionPaths({ root, commonDir: '' }, name).container;
    const grep = "grep -rlE 'PARAFAKE-(A|R)[0-9]' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null; true";
    const found = await docker(['exec', '-u', '0', container, 'sh', '-c', grep]);
    assert.is(found.stdout.trim(), '', `${name} holds a token`);
  }
}

const SESSIONS = ['rf1', 'rf2', 'rf3'];

interface World {
  network: string;
  certs: string;
  server: string;
  home: string;
  cache: string;
  login: string;
  repo: TestRepo;
}
let world: World;

const refresh = suite('a subscription login renewed under running sessions');

/** The test's own login service: the API and the token endpoint on a network of its own, state A1 (valid) and R1 (current). */
async function loginService(): Promise<{ network: string; certs: string; server: string }> {
  const certs = await certsFolder(['api.anthropic.com', 'platform.claude.com'], { 'oauth.pl': HANDLER });
  const servers: string[] = [];
  const { network } = await testNetwork(servers);
  const state = uniqueName('para-refresh-state');
  await docker(['volume', 'create', '--label', `${TEST_LABEL}=${RUN_ID}`, state]);
  onCleanup(() => docker(['volume', 'rm', '-f', state], { allowFailure: true }));
  const serve = (host: string) =>
    runServer(
      network,
      host.split('.')[0],
      ['socat', `OPENSSL-LISTEN:443,fork,reuseaddr,cert=/certs/${host}.crt,key=/certs/${host}.key,verify=0`, 'EXEC:/certs/oauth.pl'],
      ['--mount', `type=bind,source=${certs},target=/certs,readonly`, '--mount', `type=volume,source=${state},target=/state`, '--network-alias', host],
    );
  const [api, token] = await Promise.all([serve('api.anthropic.com'), serve('platform.claude.com')]);
  servers.push(api.container, token.container);
  await docker(['exec', api.container, 'sh', '-c', "printf 'at:A1 valid\\nn 1\\nrt:PARAFAKE-R1 current\\n' > /state/state"]);
  return { network, certs, server: api.container };
}

refresh.before(async () => {
  await Promise.all([netImage(), testEgressImage(), testClaudeImage()]);
  const { network, certs, server } = await loginService();
  // The host's login: within five minutes of its expiry (claude renews such a login when it next runs), of one account.
  const home = await fakeHome({ accessToken: 'sk-ant-oat01-PARAFAKE-A1', expiresAt: Date.now() + 4 * 60_000 });
  const credentials = path.join(home, '.claude', '.credentials.json');
  const login = JSON.parse(await fs.readFile(credentials, 'utf8'));
  login.claudeAiOauth.refreshToken = 'PARAFAKE-R1';
  await fs.writeFile(credentials, JSON.stringify(login), { mode: 0o600 });
  const claudeJson = path.join(home, '.claude.json');
  await fs.writeFile(
    claudeJson,
    JSON.stringify({ ...JSON.parse(await fs.readFile(claudeJson, 'utf8')), oauthAccount: { accountUuid: `para-test-account-${RUN_ID}` } }),
  );
  const image = `para-refresh-login-${RUN_ID}:latest`;
  const built = await buildAuthImage(image, home);
  assert.is(built.exitCode, 0, built.stderr);
  world = { network, certs, server, home, cache: await tempDir('para-test-cache-'), login: image, repo: await makeRepo() };
});

/** para as the user whose HOME holds the login. */
function para(script: string, args: string[]) {
  return runScript(script, args, {
    cwd: world.repo.root,
    env: { ...world.repo.env, HOME: world.home, XDG_CACHE_HOME: world.cache, NODE_EXTRA_CA_CERTS: path.join(world.certs, 'ca.pem') },
  });
}

async function ask(name: string): Promise<{ stdout: string; exitCode: number }> {
  const container = sessionPaths({ root: world.repo.root, commonDir: '' }, name).container;
  const r = await docker(['exec', '-u', 'para', container, 'timeout', '90', 'claude', '-p', 'say ok'], { allowFailure: true, timeoutMs: 120_000 });
  return { stdout: `${r.stdout}${r.stderr}`, exitCode: r.exitCode };
}

async function stateFile(name: string): Promise<string> {
  return (await docker(['exec', world.server, 'sh', '-c', `cat /state/${name} 2>/dev/null; true`])).stdout;
}

/** The host's own claude (the real CLI, with the host's HOME): claude mcp list renews a login near its expiry, and asks nothing of the model. */
function hostClaude(args: string[]) {
  return execa(
    'docker',
    [
      'run',
      '--rm',
      '--label',
      `${TEST_LABEL}=${RUN_ID}`,
      '--network',
      world.network,
      '--user',
      `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`,
      '-e',
      'HOME=/host',
      '-e',
      'NODE_EXTRA_CA_CERTS=/certs/ca.pem',
      '--mount',
      `type=bind,source=${world.home},target=/host`,
      '--mount',
      `type=bind,source=${world.certs},target=/certs,readonly`,
      '--entrypoint',
      'claude',
      CLAUDE_IMAGE,
      ...args,
    ],
    { reject: false, stdin: 'ignore', timeout: 120_000 },
  );
}

refresh('three sessions keep working across an expiry: the host refreshes once, the broker follows, nobody else refreshes', async () => {
  for (const name of SESSIONS) {
    const started = await para('start.ts', [
      name,
      '--container',
      '--detach',
      '--image',
      world.login,
      '--egress-network',
      world.network,
      '--no-user-config',
      '--',
      'sleep',
      '900',
    ]);
    assert.is(started.exitCode, 0, started.stderr);
  }
  for (const name of SESSIONS) {
    const asked = await ask(name);
    assert.is(asked.exitCode, 0, asked.stdout);
    assert.match(asked.stdout, 'answered-with-A1');
  }

  // The access token expires: the API refuses it from now on, and the sessions cannot renew anything themselves.
  await docker(['exec', world.server, 'sh', '-c', "sed -i 's/^at:A1 valid$/at:A1 expired/' /state/state"]);
  const expired = await ask('rf1');
  assert.is.not(expired.exitCode, 0, expired.stdout);
  assert.not.match(expired.stdout, 'answered-with');

  // The host's claude renews its own login, once.
  const renewed = await hostClaude(['mcp', 'list']);
  assert.is(renewed.exitCode, 0, `${renewed.stdout}${renewed.stderr}`);
  const hostLogin = JSON.parse(await fs.readFile(path.join(world.home, '.claude', '.credentials.json'), 'utf8')).claudeAiOauth;
  assert.is(hostLogin.accessToken, 'sk-ant-oat01-PARAFAKE-A2');
  assert.is(hostLogin.refreshToken, 'PARAFAKE-R2');

  // para list sees the host's newer login of the same account and brings it to the broker; a second list has nothing to bring.
  const listed = await para('list.ts', ['--json']);
  assert.is(listed.exitCode, 0, listed.stderr);
  const brokers = JSON.parse(listed.stdout).brokers as Array<{
    name: string;
    state: string;
    followsHost: boolean;
    tookHostLogin: boolean;
    loginExpiresAt: string;
    sessions: string[];
  }>;
  assert.is(brokers.length, 1, listed.stdout);
  assert.is(brokers[0].state, 'running');
  assert.is(brokers[0].followsHost, true);
  assert.is(brokers[0].tookHostLogin, true);
  assert.is(brokers[0].loginExpiresAt, new Date(hostLogin.expiresAt).toISOString());
  assert.equal([...brokers[0].sessions].sort(), SESSIONS);
  const again = JSON.parse((await para('list.ts', ['--json'])).stdout).brokers;
  assert.is(again[0].tookHostLogin, false);

  // Every session works again, with the renewed token, without a restart and without a refresh of its own.
  const answers = await Promise.all(SESSIONS.map(ask));
  for (const answer of answers) {
    assert.is(answer.exitCode, 0, answer.stdout);
    assert.match(answer.stdout, 'answered-with-A2');
  }

  // The endpoint saw exactly one refresh, the host's, and the family is intact: the host's login still works.
  assert.is((await stateFile('refresh.log')).trim(), 'PARAFAKE-R1');
  const state = await stateFile('state');
  assert.not.match(state, /^revoked /m, state);
  assert.match(state, /^rt:PARAFAKE-R2 current$/m);
  const hostAsk = await hostClaude(['-p', 'say ok']);
  assert.is(hostAsk.exitCode, 0, `${hostAsk.stdout}${hostAsk.stderr}`);
  assert.match(String(hostAsk.stdout), 'answered-with-A2');
  assert.is((await stateFile('refresh.log')).trim(), 'PARAFAKE-R1', 'a second refresh happened');
  // Nothing in a session holds either token, and the sessions never asked the token endpoint.
  await assertNoToken(world.repo.root, SESSIONS);
});

refresh.run();

// ---- when para renews a login (no engine) -------------------------------------------------------

const due = suite('when para renews a login');

function image(l: Record<string, string>): ImageInfo {
  return {
    Id: 'sha256:x',
    Config: { Labels: { [labels.authMethod]: 'claude.ai', [labels.credentialsSource]: 'login', ...l }, Image: '', User: '', Env: null, Cmd: null },
  } as unknown as ImageInfo;
}
const H = 3600_000;
function at(made: number, expires: number, extra: Record<string, string> = {}) {
  return image({ [labels.builtAt]: new Date(made).toISOString(), [labels.credentialsExpiresAt]: new Date(expires).toISOString(), ...extra });
}

due('an eight-hour make login token: renewed in its last 30 minutes, not before', () => {
  const now = Date.now();
  const saved = process.env.PARA_LOGIN_RENEW_BEFORE_MS;
  delete process.env.PARA_LOGIN_RENEW_BEFORE_MS;
  try {
    assert.is(renewalDue(at(now - 7 * H, now + H), now), false);
    assert.is(renewalDue(at(now - 7.6 * H, now + 0.4 * H), now), true);
    assert.is(renewalDue(at(now - 9 * H, now - H), now), true, 'an expired one');
    // A short-lived token is renewed in the last half of its life, not at every look.
    assert.is(renewalDue(at(now - 8 * 60_000, now + 12 * 60_000), now), false);
    assert.is(renewalDue(at(now - 11 * 60_000, now + 9 * 60_000), now), true);
    // Set explicitly, the margin is taken as set.
    process.env.PARA_LOGIN_RENEW_BEFORE_MS = String(2 * H);
    assert.is(renewalDue(at(now, now + H), now), true);
  } finally {
    if (saved === undefined) delete process.env.PARA_LOGIN_RENEW_BEFORE_MS;
    else process.env.PARA_LOGIN_RENEW_BEFORE_MS = saved;
  }
});

due("never a host's login, a setup-token, or a repository's copy of a login", () => {
  const now = Date.now();
  const soon = { [labels.builtAt]: new Date(now - 8 * H).toISOString(), [labels.credentialsExpiresAt]: new Date(now + 60_000).toISOString() };
  assert.is(renewedByPara(image(soon)), true);
  assert.is(renewedByPara(image({ ...soon, [labels.credentialsSource]: 'subscription' })), false);
  assert.is(renewedByPara(image({ ...soon, [labels.authMethod]: 'oauth_token' })), false);
  assert.is(renewedByPara(image({ ...soon, [labels.credentialsFrom]: 'sha256:y', [labels.toolsImage]: 'sha256:z' })), false);
  assert.is(renewedByPara(image({ ...soon, [labels.repo]: '/some/repo' })), false);
  assert.is(renewalDue(image({ ...soon, [labels.credentialsSource]: 'subscription' }), now), false);
});

due.run();

// ---- a make login login: nobody else holds its refresh token, so para renews it ------------------

const renew = suite('a make login login renewed by para');

interface LoginWorld {
  network: string;
  certs: string;
  server: string;
  home: string;
  tag: string;
  repo: TestRepo;
}
let lw: LoginWorld;

renew.before(
  loudly(async () => {
    await Promise.all([netImage(), testEgressImage()]);
    const claudeImage = await testClaudeImage();
    const { network, certs, server } = await loginService();
    const tag = trackImage(`para-renew-login-${RUN_ID}:latest`);
    // What make login makes, by its own commit path: a login container holding A1/R1, ten minutes from its expiry.
    const dir = await tempDir('para-test-login-');
    const file = path.join(dir, 'credentials.json');
    const login = {
      accessToken: 'sk-ant-oat01-PARAFAKE-A1',
      refreshToken: 'PARAFAKE-R1',
      expiresAt: Date.now() + 10 * 60_000,
      scopes: ['user:inference', 'user:profile'],
      subscriptionType: 'max',
    };
    await fs.writeFile(file, JSON.stringify({ claudeAiOauth: login }), { mode: 0o600 });
    await withLoginContainer(shellEngine, claudeImage, { offline: true }, async (container) => {
      const target = '/home/para/.claude/.credentials.json';
      await docker(['exec', container, 'mkdir', '-p', '/home/para/.claude']);
      await docker(['cp', file, `${container}:${target}`]);
      await docker(['exec', '-u', 'root', container, 'sh', '-c', `chown para:para ${target} && chmod 0600 ${target}`]);
      return commitLogin(shellEngine, container, { tag, claudeImage });
    });
    await fs.remove(dir);
    // The user's HOME holds no login of its own: nothing to follow.
    lw = { network, certs, server, home: await tempDir('para-test-home-'), tag, repo: await makeRepo() };
  }),
);

function paraAs(script: string, args: string[], env: Record<string, string> = {}) {
  return runScript(script, args, {
    cwd: lw.repo.root,
    env: { ...lw.repo.env, HOME: lw.home, XDG_CACHE_HOME: path.join(lw.home, '.cache'), NODE_EXTRA_CA_CERTS: path.join(lw.certs, 'ca.pem'), ...env },
  });
}

async function askIn(name: string): Promise<string> {
  const container = sessionPaths({ root: lw.repo.root, commonDir: '' }, name).container;
  const r = await docker(['exec', '-u', 'para', container, 'timeout', '90', 'claude', '-p', 'say ok'], { allowFailure: true, timeoutMs: 120_000 });
  return `${r.stdout}${r.stderr}`;
}

async function serverFile(name: string): Promise<string> {
  return (await docker(['exec', lw.server, 'sh', '-c', `cat /state/${name} 2>/dev/null; true`])).stdout;
}

async function imageLogin(): Promise<{ id: string; expiresAt: string; accessToken: string; refreshToken: string }> {
  const info = (await shellEngine.inspectImage(lw.tag))!;
  const read = await docker([
    'run',
    '--rm',
    '--network',
    'none',
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    '--entrypoint',
    'cat',
    lw.tag,
    '/home/para/.claude/.credentials.json',
  ]);
  const oauth = JSON.parse(read.stdout).claudeAiOauth;
  return { id: info.Id, expiresAt: info.Config.Labels?.[labels.credentialsExpiresAt] ?? '', accessToken: oauth.accessToken, refreshToken: oauth.refreshToken };
}

const RENEWED = ['rn1', 'rn2', 'rn3'];
/** The usual margin, as set: this test's ten-minute login is within it (unset, half a token this short's life would be). */
const SOON = { PARA_LOGIN_RENEW_BEFORE_MS: String(30 * 60_000) };
/** Every make login login looks due: para renews at the next look. */
const DUE = { PARA_LOGIN_RENEW_BEFORE_MS: String(3 * 3600_000) };

renew('parallel starts and looks renew it once per expiry with the official CLI; sessions keep working; old logins are gone', async () => {
  const first = await imageLogin();
  assert.is(first.refreshToken, 'PARAFAKE-R1');
  // Three sessions start at once, the login ten minutes from its expiry: one of them renews it, the others wait for it.
  const started = await Promise.all(
    RENEWED.map((name) =>
      paraAs('start.ts', [name, '--container', '--detach', '--image', lw.tag, '--egress-network', lw.network, '--no-user-config', '--', 'sleep', '900'], SOON),
    ),
  );
  for (const s of started) assert.is(s.exitCode, 0, s.stderr);
  assert.is((await serverFile('refresh.log')).trim(), 'PARAFAKE-R1');
  const second = await imageLogin();
  assert.is(second.accessToken, 'sk-ant-oat01-PARAFAKE-A2');
  assert.is(second.refreshToken, 'PARAFAKE-R2');
  assert.ok(Date.parse(second.expiresAt) > Date.now() + 50 * 60_000, second.expiresAt);
  // The image that held the used refresh token is gone, and so is the refresh container.
  assert.is(await shellEngine.inspectImage(first.id), undefined);
  assert.is(await shellEngine.inspectContainer(refreshContainerName(lw.tag)), undefined);
  for (const name of RENEWED) assert.match(await askIn(name), 'answered-with-A2');

  // The next expiry: three looks at once (para list) renew it once more; the API stops taking A2.
  const looks = await Promise.all([0, 1, 2].map(() => paraAs('list.ts', ['--json'], DUE)));
  const renewedBy = looks.map((l) => {
    assert.is(l.exitCode, 0, l.stderr);
    return (JSON.parse(l.stdout).brokers as Array<{ renewedLogin: boolean; renewedByPara: boolean }>).filter((b) => b.renewedLogin).length;
  });
  assert.is(
    renewedBy.reduce((a, b) => a + b, 0),
    1,
    `renewals per look: ${renewedBy.join(', ')}`,
  );
  assert.equal((await serverFile('refresh.log')).trim().split('\n'), ['PARAFAKE-R1', 'PARAFAKE-R2']);
  await docker(['exec', lw.server, 'sh', '-c', "sed -i 's/^at:A2 valid$/at:A2 expired/' /state/state"]);
  for (const name of RENEWED) assert.match(await askIn(name), 'answered-with-A3');
  const state = await serverFile('state');
  assert.not.match(state, /^revoked /m, state);
  assert.match(state, /^rt:PARAFAKE-R3 current$/m);
  assert.is(await shellEngine.inspectImage(second.id), undefined);
  assert.is((await imageLogin()).refreshToken, 'PARAFAKE-R3');
  await assertNoToken(lw.repo.root, RENEWED);
});

renew('a renewal whose command is killed midway is finished by the next look, never thrown away', async () => {
  const before = await imageLogin();
  // A list renewing the login is killed (SIGKILL: no cleanup of its own) once its refresh container exists.
  const [command, ...entry] = scriptCommand('list.ts');
  const child = execa(command, [...entry, '--json'], {
    cwd: lw.repo.root,
    env: { PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`, ...lw.repo.env, HOME: lw.home, NODE_EXTRA_CA_CERTS: path.join(lw.certs, 'ca.pem'), ...DUE },
    reject: false,
    stdin: 'ignore',
  });
  const lock = refreshContainerName(lw.tag);
  for (let i = 0; i < 300 && !(await shellEngine.inspectContainer(lock)); i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
  child.kill('SIGKILL');
  await child;
  assert.ok(await shellEngine.inspectContainer(lock), 'the refresh container was never made');
  // The next look finds it, waits for claude in it to end, and saves what it renewed (or runs it to the end first).
  const next = await paraAs('list.ts', ['--json']);
  assert.is(next.exitCode, 0, next.stderr);
  assert.is(await shellEngine.inspectContainer(lock), undefined);
  const after = await imageLogin();
  assert.is(after.refreshToken, 'PARAFAKE-R4');
  assert.is(await shellEngine.inspectImage(before.id), undefined);
  assert.equal((await serverFile('refresh.log')).trim().split('\n'), ['PARAFAKE-R1', 'PARAFAKE-R2', 'PARAFAKE-R3']);
  assert.not.match(await serverFile('state'), /^revoked /m);
  for (const name of RENEWED) assert.match(await askIn(name), /answered-with-A(3|4)/);
});

renew('a renewal that fails says so and changes nothing; a session holding a copy of the login stops para renewing it', async () => {
  const before = await imageLogin();
  // The service refuses the refresh (a revoked login): list says para could not renew it, the image stays as it was.
  await docker(['exec', lw.server, 'sh', '-c', "echo 'revoked 1' >> /state/state"]);
  const refused = await paraAs('list.ts', ['--json'], DUE);
  assert.is(refused.exitCode, 0, refused.stderr);
  const doc = JSON.parse(refused.stdout);
  assert.match(doc.brokers[0].renewalProblem ?? '', /could not be renewed/);
  const said = await paraAs('list.ts', [], DUE);
  assert.match(said.stderr, /para could not renew the login the credential broker \S+ serves \(it works until [^)]+\): the login in \S+ could not be renewed/);
  assert.is(said.stderr.split('\n').filter((l) => l.includes('could not renew')).length, 1, said.stderr);
  assert.is((await imageLogin()).id, before.id);
  assert.is(await shellEngine.inspectContainer(refreshContainerName(lw.tag)), undefined);
  const tries = (await serverFile('refresh.log')).trim().split('\n').length;

  // A session with the login baked in (--credentials image) holds the same refresh token: para leaves the login alone.
  const baked = await paraAs('start.ts', [
    'rnimg',
    '--container',
    '--detach',
    '--credentials',
    'image',
    '--image',
    lw.tag,
    '--egress-network',
    lw.network,
    '--no-user-config',
    '--',
    'sleep',
    '900',
  ]);
  assert.is(baked.exitCode, 0, baked.stderr);
  const held = JSON.parse((await paraAs('list.ts', ['--json'], DUE)).stdout);
  assert.match(held.brokers[0].renewalProblem ?? '', /the session rnimg \(--credentials image\) holds a copy of this login/);
  assert.is((await serverFile('refresh.log')).trim().split('\n').length, tries, 'para refreshed a login a session holds');
});

renew.run();
