// The credential broker on the real engine, with the real claude CLI, in a fake internet of the
// test's own containers: sessions reach a fake api.anthropic.com with the user's login, which no
// session container holds; the agent's own credentials never arrive, by any path; a broker killed
// under a running session comes back with the next start; a new make image reaches running
// sessions without a restart; --credentials image still bakes the login in.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { labels } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { buildAuthImage, FAKE_TOKEN, fakeHome, runScript, testEgressImage } from './support/images.ts';
import { certsFolder, HANDLER, httpsServer, netImage, runServer, testNetwork } from './support/internet.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { EGRESS_IMAGE, onCleanup, RUN_ID, TEST_LABEL, uniqueName } from './support/resources.ts';
import { inspectContainer } from './support/verbs.ts';

/** The fake API: logs each request line with the headers that could carry a credential, answers the Messages API with one streamed text. */
const API_HANDLER = `#!/usr/bin/perl
use strict; $| = 1;
my $line = <STDIN>; $line =~ s/\\r?\\n$//;
my ($len, @h) = (0);
while (my $x = <STDIN>) { $x =~ s/\\r?\\n$//; last if $x eq ''; push @h, $x; $len = $1 if $x =~ /^content-length:\\s*(\\d+)/i; }
my $body = ''; read(STDIN, $body, $len) if $len;
open(my $log, '>>', '/tmp/requests.log'); print $log "$line\\n"; print $log "  $_\\n" for grep { /^(authorization|x-api-key|host|cookie):/i } @h;
my @marks = $body =~ /(para-continue-mark-[a-z]+)/g; print $log "  marks: @marks\\n" if @marks; close $log;
my $out = '';
sub ev { $out .= "event: $_[0]\\ndata: $_[1]\\n\\n"; }
if ($line =~ m{^POST /v1/messages}) {
  ev('message_start', '{"type":"message_start","message":{"id":"msg_b","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}');
  ev('content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}');
  ev('content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"broker-ok"}}');
  ev('content_block_stop', '{"type":"content_block_stop","index":0}');
  ev('message_delta', '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}');
  ev('message_stop', '{"type":"message_stop"}');
  print "HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\nContent-Length: " . length($out) . "\\r\\nConnection: close\\r\\n\\r\\n$out";
} else { print "HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}"; }
`;

const SECOND_TOKEN = `sk-ant-oat01-PARAFAKE${RUN_ID}SECONDTOKEN`;
const FOREIGN = 'sk-ant-api03-PARAFAKE-foreign-account-key';

interface World {
  network: string;
  ca: string;
  api: string;
  other: string;
  login: string;
  repo: TestRepo;
}
let world: World;

const broker = suite('the credential broker');

broker.before(async () => {
  await Promise.all([netImage(), testEgressImage()]);
  const certs = await certsFolder(['api.anthropic.com', 'other.example'], { 'api.pl': API_HANDLER, 'handler.sh': HANDLER });
  const servers: string[] = [];
  const { network } = await testNetwork(servers);
  const [api, other] = await Promise.all([
    httpsServer(network, 'api.anthropic.com', certs, 'api.pl'),
    httpsServer(network, 'other.example', certs, 'handler.sh'),
  ]);
  servers.push(api.container, other.container);
  // A login image of this file's own: make image is run on it again below.
  const login = `para-broker-login-${RUN_ID}:latest`;
  const built = await buildAuthImage(login, await fakeHome());
  assert.is(built.exitCode, 0, built.stderr);
  world = { network, ca: path.join(certs, 'ca.pem'), api: api.container, other: other.container, login, repo: await makeRepo() };
});

function para(script: string, args: string[], env: Record<string, string> = {}) {
  return runScript(script, args, { cwd: world.repo.root, env: { ...world.repo.env, NODE_EXTRA_CA_CERTS: world.ca, ...env } });
}

async function brokerCheck(): Promise<{ status: string; message: string }> {
  const result = await para('doctor.ts', ['--json', '--image', world.login]);
  const checks = JSON.parse(result.stdout).checks as Array<{ id: string; status: string; message: string }>;
  return checks.find((c) => c.id === 'credential-broker')!;
}

function startArgs(name: string, ...rest: string[]): string[] {
  return [name, '--container', '--detach', '--image', world.login, '--egress-network', world.network, '--no-user-config', ...rest, '--', 'sleep', '900'];
}

function container(name: string): string {
  return sessionPaths({ root: world.repo.root, commonDir: '' }, name).container;
}

async function inside(name: string, script: string, user = 'para'): Promise<{ stdout: string; exitCode: number }> {
  const r = await docker(['exec', '-u', user, container(name), 'bash', '-c', script], { allowFailure: true, timeoutMs: 120_000 });
  return { stdout: `${r.stdout}${r.stderr}`, exitCode: r.exitCode };
}

async function requests(server: string): Promise<string> {
  return (await docker(['exec', server, 'sh', '-c', 'cat /tmp/requests.log 2>/dev/null; true'])).stdout;
}

async function brokerContainer(): Promise<string> {
  const ids = await docker([
    'ps',
    '-aq',
    '--filter',
    `label=${labels.role}=broker`,
    '--filter',
    `label=${labels.brokerImage}=${world.login}`,
    '--filter',
    `label=${labels.brokerNetwork}=${world.network}`,
    '--filter',
    `label=${TEST_LABEL}=${RUN_ID}`,
  ]);
  const found = ids.stdout.split('\n').filter(Boolean);
  assert.is(found.length, 1, `brokers of ${world.login}: ${ids.stdout}`);
  return found[0];
}

broker("two sessions reach the API with the user's login, which neither holds anywhere", async () => {
  for (const name of ['bk1', 'bk2']) {
    const started = await para('start.ts', startArgs(name));
    assert.is(started.exitCode, 0, started.stderr);
  }
  for (const name of ['bk1', 'bk2']) {
    const status = JSON.parse((await inside(name, 'claude auth status')).stdout) as { loggedIn: boolean; authMethod: string };
    assert.is(status.loggedIn, true);
    assert.is(status.authMethod, 'claude.ai');
    const asked = await inside(name, 'timeout 90 claude -p "say ok"');
    assert.is(asked.exitCode, 0, asked.stdout);
    assert.match(asked.stdout, 'broker-ok');
  }
  const log = await requests(world.api);
  assert.ok((log.match(/^POST \/v1\/messages/gm) ?? []).length >= 2, log);
  const credentials = log.split('\n').filter((l) => /^\s+(authorization|x-api-key):/i.test(l));
  assert.ok(credentials.length >= 2, log);
  for (const line of credentials) assert.is(line.trim(), `Authorization: Bearer ${FAKE_TOKEN}`);

  // The token is nowhere a session can read: its files (every layer it sees), its processes, docker's views of its containers and image.
  for (const name of ['bk1', 'bk2']) {
    const files = await inside(name, `grep -rlF '${FAKE_TOKEN}' / --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null; true`, '0');
    assert.is(files.stdout.trim(), '', 'a file in the session holds the token');
    // The token given in two halves: this very command's arguments must not hold it whole.
    const half = Math.floor(FAKE_TOKEN.length / 2);
    const procs = await inside(
      name,
      `a='${FAKE_TOKEN.slice(0, half)}'; b='${FAKE_TOKEN.slice(half)}'; cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null | grep -caF -f <(printf '%s%s\\n' "$a" "$b"); true`,
      '0',
    );
    assert.is(procs.stdout.trim(), '0', "a process's environment or arguments hold the token");
    const paths = sessionPaths({ root: world.repo.root, commonDir: '' }, name);
    for (const c of [paths.container, paths.proxy, paths.forwarder]) {
      assert.not.match((await docker(['inspect', c])).stdout, FAKE_TOKEN, `docker inspect ${c}`);
      const logs = await docker(['logs', c], { allowFailure: true });
      assert.not.match(`${logs.stdout}${logs.stderr}`, FAKE_TOKEN, `docker logs ${c}`);
    }
    const image = (await docker(['inspect', '--format', '{{.Image}}', paths.container])).stdout.trim();
    const saved = await execa('sh', ['-c', `docker image save "$1" | grep -caF "$2"; true`, 'sh', image, FAKE_TOKEN], { reject: false });
    assert.is(String(saved.stdout).trim(), '0', "the session's image holds the token in a layer");
  }
  // The doctor asks the broker from inside a session.
  const checked = await brokerCheck();
  assert.is(checked.status, 'ok', checked.message);
  assert.match(checked.message, /the login is held by the credential broker only: \S+ \(2 sessions, login valid until/);
  const b = await brokerContainer();
  assert.not.match((await docker(['inspect', b])).stdout, FAKE_TOKEN, 'docker inspect of the broker');
  const bl = await docker(['logs', b]);
  assert.not.match(`${bl.stdout}${bl.stderr}`, FAKE_TOKEN, "the broker's log");
});

broker("the agent's own credentials never arrive, by the broker, by the proxy or under another name", async () => {
  await docker(['exec', world.api, 'sh', '-c', ': > /tmp/requests.log']);
  const request = (port: number, text: string) => `exec 3<>/dev/tcp/127.0.0.1/${port} || exit 9; printf '${text}' >&3; timeout 10 head -n 1 <&3; exec 3<&-`;
  const body = 'Content-Type: application/json\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}';
  const tries = [
    request(3129, `POST /v1/messages HTTP/1.1\\r\\nHost: api.anthropic.com\\r\\nX-Api-Key: ${FOREIGN}\\r\\n${body}`),
    request(3129, `POST /v1/messages HTTP/1.1\\r\\nHost: api.anthropic.com\\r\\nAuthorization: Bearer ${FOREIGN}\\r\\n${body}`),
    request(3129, `POST /v1/messages HTTP/1.1\\r\\nHost: other.example\\r\\nX-Api-Key: ${FOREIGN}\\r\\n${body}`),
    request(3129, `POST http://other.example/v1/messages HTTP/1.1\\r\\nHost: other.example\\r\\nX-Api-Key: ${FOREIGN}\\r\\n${body}`),
  ];
  for (const t of tries) {
    const r = await inside('bk1', t);
    assert.match(r.stdout, /^HTTP\/1\.1 200/, r.stdout);
  }
  // A path the CLI never uses is refused at the broker.
  const other = await inside(
    'bk1',
    request(3129, `GET /api/oauth/profile HTTP/1.1\\r\\nHost: api.anthropic.com\\r\\nX-Api-Key: ${FOREIGN}\\r\\nConnection: close\\r\\n\\r\\n`),
  );
  assert.match(other.stdout, /^HTTP\/1\.1 403/);
  // The proxy tunnels nothing to the API's host, even with the host on the allowlist.
  const tunnel = await inside('bk1', request(3128, 'CONNECT api.anthropic.com:443 HTTP/1.1\\r\\nHost: api.anthropic.com:443\\r\\n\\r\\n'));
  assert.match(tunnel.stdout, /^HTTP\/1\.1 403/);
  const log = await requests(world.api);
  assert.not.match(log, FOREIGN, 'a foreign credential reached the API');
  assert.is((log.match(/^POST \/v1\/messages/gm) ?? []).length, 4, log);
  for (const line of log.split('\n').filter((l) => /^\s+(authorization|x-api-key):/i.test(l))) assert.is(line.trim(), `Authorization: Bearer ${FAKE_TOKEN}`);
  for (const line of log.split('\n').filter((l) => /^\s+host:/i.test(l))) assert.is(line.trim(), 'Host: api.anthropic.com');
  assert.is((await requests(world.other)).trim(), '', 'the server under another name saw a request');
});

broker('a broker killed under a running session comes back with the next start; a new make image reaches running sessions', async () => {
  const b = await brokerContainer();
  await docker(['kill', b]);
  const down = await inside('bk1', 'timeout 60 claude -p "say ok"');
  assert.is.not(down.exitCode, 0, 'claude worked with the broker down');
  assert.match(down.stdout, 'the credential broker is not running', 'claude did not say why');
  assert.match(down.stdout, 'para doctor');
  const doctored = await brokerCheck();
  assert.is(doctored.status, 'warn');
  assert.match(doctored.message, /the credential broker \S+ is stopped \(sessions bk1, bk2 cannot reach the API\)/);
  const listed = await para('list.ts', []);
  assert.match(listed.stderr, /credential broker .* is stopped: claude in the session cannot reach the API; the next start/);
  const started = await para('start.ts', startArgs('bk3'));
  assert.is(started.exitCode, 0, started.stderr);
  const back = await inside('bk1', 'timeout 90 claude -p "say ok"');
  assert.is(back.exitCode, 0, back.stdout);
  assert.match(back.stdout, 'broker-ok');

  // make image again, from another login: the running sessions' next request carries it, no restart.
  const before = (await docker(['inspect', '--format', '{{.State.StartedAt}}', container('bk2')])).stdout.trim();
  const rebuilt = await buildAuthImage(world.login, await fakeHome({ accessToken: SECOND_TOKEN }));
  assert.is(rebuilt.exitCode, 0, rebuilt.stderr);
  assert.match(rebuilt.stderr, /now serves? the new login/);
  await docker(['exec', world.api, 'sh', '-c', ': > /tmp/requests.log']);
  const asked = await inside('bk2', 'timeout 90 claude -p "say ok"');
  assert.is(asked.exitCode, 0, asked.stdout);
  const log = await requests(world.api);
  assert.match(log, `Authorization: Bearer ${SECOND_TOKEN}`);
  assert.not.match(log, FAKE_TOKEN);
  assert.is((await docker(['inspect', '--format', '{{.State.StartedAt}}', container('bk2')])).stdout.trim(), before, 'the session was restarted');
});

broker('--credentials image bakes the login in, as before; egress none has no broker', async () => {
  const started = await para('start.ts', startArgs('bkimg', '--credentials', 'image'));
  assert.is(started.exitCode, 0, started.stderr);
  const held = await inside('bkimg', 'cat ~/.claude/.credentials.json');
  assert.match(held.stdout, SECOND_TOKEN);
  await docker(['exec', world.api, 'sh', '-c', ': > /tmp/requests.log']);
  const asked = await inside('bkimg', 'timeout 90 claude -p "say ok"');
  assert.is(asked.exitCode, 0, asked.stdout);
  assert.match(await requests(world.api), `Authorization: Bearer ${SECOND_TOKEN}`);
  const state = JSON.parse(await fs.readFile(path.join(world.repo.root, '.git', 'para', 'sessions', 'bkimg.json'), 'utf8')) as { credentials?: string };
  assert.is(state.credentials, 'image');
  const bad = await para('start.ts', ['bkbad', '--container', '--credentials', 'vault']);
  assert.is(bad.exitCode, 2);
  assert.match(bad.stderr, 'use broker or image');
});

broker('claude --continue in a resumed session: the earlier conversation goes on through the broker', async () => {
  const started = await para('start.ts', startArgs('bkc'));
  assert.is(started.exitCode, 0, started.stderr);
  const first = await inside('bkc', 'cd ~ && timeout 90 claude -p "remember para-continue-mark-one"');
  assert.is(first.exitCode, 0, first.stdout);
  // The container stops (a reboot, docker stop): starting the session again resumes it.
  await docker(['stop', '-t', '1', container('bkc')]);
  const resumed = await para('start.ts', ['bkc', '--container', '--detach', '--image', world.login, '--egress-network', world.network, '--no-user-config']);
  assert.is(resumed.exitCode, 0, resumed.stderr);
  await docker(['exec', world.api, 'sh', '-c', ': > /tmp/requests.log']);
  const next = await inside('bkc', 'cd ~ && timeout 90 claude -p --continue "and para-continue-mark-two"');
  assert.is(next.exitCode, 0, next.stdout);
  assert.match(next.stdout, 'broker-ok');
  const log = await requests(world.api);
  assert.match(log, /marks: .*para-continue-mark-one.*para-continue-mark-two/, log);
  assert.match(log, `Authorization: Bearer ${SECOND_TOKEN}`);
});

broker("behind the host's proxy: the broker reaches the API through it, its password only in the broker's memory", async () => {
  // Two networks: the sessions, the broker and the corporate proxy on one; the API only on the other, which the proxy also joins.
  const servers: string[] = [];
  const inner = await testNetwork(servers);
  const outer = await testNetwork([]);
  const password = 'PARAFAKE-corp-proxy-password';
  const conf = ['Port 3128', 'Listen 0.0.0.0', 'Timeout 30', 'LogLevel Connect', `BasicAuth corp-user ${password}`, 'ConnectPort 443', 'MaxClients 20'].join(
    '\n',
  );
  const corp = await runServer(inner.network, 'corp', ['sh', '-c', `printf '%s\\n' "$0" > /tmp/tp.conf && exec tinyproxy -d -c /tmp/tp.conf`, conf]);
  servers.push(corp.container);
  await docker(['network', 'connect', outer.network, corp.container]);
  const api = await httpsServer(outer.network, 'api.anthropic.com', path.dirname(world.ca), 'api.pl');
  servers.push(api.container);
  const env = { HTTPS_PROXY: `http://corp-user:${password}@${corp.ip}:3128` };
  const started = await para(
    'start.ts',
    ['bkcorp', '--container', '--detach', '--image', world.login, '--egress-network', inner.network, '--no-user-config', '--', 'sleep', '900'],
    env,
  );
  assert.is(started.exitCode, 0, started.stderr);
  const asked = await inside('bkcorp', 'timeout 90 claude -p "say ok"');
  assert.is(asked.exitCode, 0, asked.stdout);
  assert.match(asked.stdout, 'broker-ok');
  assert.match(await requests(api.container), `Authorization: Bearer ${SECOND_TOKEN}`);
  const corpLog = `${(await docker(['logs', corp.container])).stdout}${(await docker(['logs', corp.container])).stderr}`;
  assert.match(corpLog, 'CONNECT api.anthropic.com:443');
  const broker = (
    await docker(['ps', '-q', '--filter', `label=${labels.role}=broker`, '--filter', `label=${labels.brokerNetwork}=${inner.network}`])
  ).stdout.trim();
  assert.ok(broker, 'no broker on the inner network');
  assert.not.match((await docker(['inspect', broker])).stdout, password, "the broker's arguments, environment or labels hold the password");
  const cmdlines = await docker(['exec', broker, 'sh', '-c', "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]);
  assert.not.match(cmdlines.stdout, password, "a broker process's arguments hold the password");
  assert.match(cmdlines.stdout, 'PROXY:');
  assert.is((await para('cancel.ts', ['bkcorp', '--force'])).exitCode, 0);
});

broker("the broker's image missing: start says what to run and leaves nothing half-made", async () => {
  const missing = `para-egress-missing-${RUN_ID}:latest`;
  const failed = await para('start.ts', startArgs('bkmissing'), { PARA_EGRESS_IMAGE: missing });
  assert.is(failed.exitCode, 1, failed.stderr);
  assert.match(failed.stderr, `${missing} does not exist`);
  assert.match(failed.stderr, /make image|para image/);
  assert.not.ok(await fs.pathExists(path.join(world.repo.root, '.git', 'para', 'sessions', 'bkmissing.json')), 'a session record was left');
  assert.is(await inspectContainer(container('bkmissing')), undefined);
  assert.is(await world.repo.git(['branch', '--list', 'para/bkmissing']), '');
  assert.is((await docker(['ps', '-aq', '--filter', `label=${labels.session}=bkmissing`])).stdout.trim(), '');
});

broker('clean removes a broker only once no session uses it, with its volume; another name is never touched', async () => {
  const b = await brokerContainer();
  const brokerName = (await docker(['inspect', '--format', '{{.Name}}', b])).stdout.trim().replace(/^\//, '');
  // Someone else's broker on the same engine (another PARA_BROKER): labelled as one, never para clean's to remove.
  const other = uniqueName('para-broker-someone-else');
  await docker([
    'run',
    '-d',
    '--name',
    other,
    '--network',
    'none',
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    '--label',
    `${labels.managedBy}=para`,
    '--label',
    `${labels.role}=broker`,
    '--label',
    `${labels.brokerImage}=${world.login}`,
    '--label',
    `${labels.brokerNetwork}=`,
    '--entrypoint',
    'sleep',
    EGRESS_IMAGE,
    '600',
  ]);
  onCleanup(() => docker(['rm', '-f', other], { allowFailure: true }));
  const busy = await para('clean.ts', ['--json']);
  assert.is(busy.exitCode, 0, busy.stderr);
  assert.not.ok(
    JSON.parse(busy.stdout).brokers.some((x: { name: string }) => x.name === brokerName),
    busy.stdout,
  );
  assert.ok(await inspectContainer(b), 'a broker in use was removed');
  for (const name of ['bk1', 'bk2', 'bk3', 'bkimg', 'bkc']) {
    const cancelled = await para('cancel.ts', [name, '--force']);
    assert.is(cancelled.exitCode, 0, cancelled.stderr);
  }
  const dry = await para('clean.ts', ['--dry-run', '--json']);
  assert.equal(
    JSON.parse(dry.stdout).brokers.map((x: { name: string }) => x.name),
    [brokerName],
    dry.stdout,
  );
  assert.ok(await inspectContainer(b), 'a dry run removed the broker');
  const cleaned = await para('clean.ts', []);
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  assert.match(cleaned.stderr, `removed the credential broker ${brokerName} and its volume ${brokerName}-socket (no session uses it)`);
  assert.is(await inspectContainer(b), undefined);
  assert.is((await docker(['volume', 'inspect', `${brokerName}-socket`], { allowFailure: true })).exitCode, 1);
  assert.ok(await inspectContainer(other), "someone else's broker was removed");
  // The next start makes it again.
  const again = await para('start.ts', startArgs('bk4'));
  assert.is(again.exitCode, 0, again.stderr);
  assert.match((await inside('bk4', 'timeout 90 claude -p "say ok"')).stdout, 'broker-ok');
});

broker.run();
