// The credential broker: one container per engine (and egress network) that holds the Claude
// login, so that no session container does. Claude in a session talks plain HTTP to
// ANTHROPIC_BASE_URL on its own loopback; the session's forwarder relays that port to the broker's
// unix socket; squid in the broker (a reverse proxy) forwards only the paths the CLI uses, only to
// the API's host over TLS, drops every credential the request carried and sets the user's. The
// login lives in the broker's memory only (a tmpfs), pushed by para through docker exec's standard
// input: never an argument, an environment value, a label or a file on disk.
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import fs from 'fs-extra';
import { makeCommand } from '../cli.ts';
import { config, extraLabels, labels, MANAGED_BY, temporaryLabels } from '../config.ts';
import type { ContainerInfo, Engine, ImageInfo } from '../engine/engine.ts';
import { labelArgs, type RunSpec } from '../engine/spec.ts';
import { ParaError } from '../errors.ts';
import { egressDns, hostUpstream, SQUID_QUIET, type Upstream } from '../egress/rules.ts';
import { hardened } from '../egress/hardened.ts';
import { discoverCredentials } from '../image/credentials.ts';

/** The port claude in a session sends its API requests to (ANTHROPIC_BASE_URL), on the session's loopback. */
export const BROKER_PORT = 3129;
export const BROKER_URL = `http://127.0.0.1:${BROKER_PORT}`;
/** Where the broker's socket is, in the broker (its volume) and in each session's forwarder (read-only). */
export const BROKER_SOCKET_DIR = '/para-broker';
const BROKER_VOLUME_DIR = '/para-egress';
const SOCKET_NAME = 'broker.sock';
/** The broker's memory-only folder: the squid configuration with the credential, and which login it is. */
const STATE = '/run/para-broker';
/** squid's port on the broker's own loopback, behind the socket. */
const SQUID_PORT = 3130;
/** socat's port on the broker's loopback: the TLS connection to the API's host, its certificate checked. */
const TLS_PORT = 3131;
/** A port as /proc/net/tcp writes it (the doctor reads that table too). */
export function hex(port: number): string {
  return port.toString(16).toUpperCase().padStart(4, '0');
}
/** Behind the host's proxy: socat's port for the plain tunnel (CONNECT) to the API's host, under TLS_PORT's TLS. */
const TUNNEL_PORT = 3132;
/** The API's host: the only place the credential is ever sent. */
export const API_HOST = 'api.anthropic.com';

/**
 * The requests the real CLI sends to its base URL, found with a logging fake API in all three login
 * modes (claude -p and an interactive session): a HEAD / (a reachability check) and the Messages
 * API (with ?beta=true). count_tokens is the Messages API's own companion. Nothing else is forwarded.
 */
export const FORWARDED_PATHS = ['^/$', '^/v1/messages(\\?|$)', '^/v1/messages/count_tokens(\\?|$)'];

export type { CredentialsMode } from '../config.ts';

/** How the broker authenticates: a bearer token (a subscription login or a setup-token) or an API key. */
export interface BrokerCredential {
  header: 'authorization' | 'x-api-key';
  value: string;
  /** What claude auth status says for this login (the session's placeholder says the same). */
  authMethod: 'claude.ai' | 'oauth_token' | 'api_key';
  expiresAt?: number;
  subscriptionType?: string;
  scopes?: string[];
}

/**
 * The broker's names on an engine: one per login image and egress network (para-broker for
 * para-authenticated on Docker's own network), so that two logins never share one.
 */
export function brokerNames(network: string | null, image: string): { container: string; volume: string } {
  const base = config.brokerName;
  const usual = network === null && image === config.authenticatedImage;
  const name = usual
    ? base
    : `${base}-${createHash('sha256')
        .update(`${network ?? ''}\n${image}`)
        .digest('hex')
        .slice(0, 10)}`;
  return { container: name, volume: `${name}-socket` };
}

/** A broker of its own under `name` (the online check's): its volume is named after it. */
export function ownBrokerNames(name: string): { container: string; volume: string } {
  return { container: name, volume: `${name}-socket` };
}

export function brokerLabels(network: string | null, image: string): Record<string, string> {
  return { ...extraLabels(), [labels.managedBy]: MANAGED_BY, [labels.role]: 'broker', [labels.brokerNetwork]: network ?? '', [labels.brokerImage]: image };
}

/** A token or key squid can carry in a header line: printable, no quote, no space, no backslash. */
const TOKEN_SHAPE = /^[A-Za-z0-9._~+/=-]{8,4096}$/;

function unreadable(image: string, what: string): ParaError {
  return new ParaError(`the login in ${image} cannot be used by the credential broker: ${what}`, {
    code: 'broker-credential',
    hint: `run ${makeCommand('image')} again, or start with --credentials image`,
  });
}

/** Finds the login in the files of an authenticated image's home (never puts any of it in an error). */
export function credentialFromFiles(image: string, credentialsJson: string, settingsJson: string): BrokerCredential {
  if (credentialsJson.trim()) {
    let oauth: Record<string, unknown> | undefined;
    try {
      oauth = (JSON.parse(credentialsJson) as { claudeAiOauth?: Record<string, unknown> }).claudeAiOauth;
    } catch {
      throw unreadable(image, '.credentials.json is not valid JSON');
    }
    if (oauth && typeof oauth.accessToken === 'string') {
      if (!TOKEN_SHAPE.test(oauth.accessToken)) throw unreadable(image, 'the access token has characters a header cannot carry');
      return {
        header: 'authorization',
        value: `Bearer ${oauth.accessToken}`,
        authMethod: 'claude.ai',
        expiresAt: typeof oauth.expiresAt === 'number' ? oauth.expiresAt : undefined,
        subscriptionType: typeof oauth.subscriptionType === 'string' ? oauth.subscriptionType : undefined,
        scopes: Array.isArray(oauth.scopes) ? oauth.scopes.filter((s): s is string => typeof s === 'string') : undefined,
      };
    }
  }
  let env: Record<string, unknown> = {};
  try {
    env = ((JSON.parse(settingsJson || '{}') as { env?: Record<string, unknown> }).env ?? {}) as Record<string, unknown>;
  } catch {
    throw unreadable(image, 'settings.json is not valid JSON');
  }
  const token = env.CLAUDE_CODE_OAUTH_TOKEN;
  if (typeof token === 'string' && token) {
    if (!TOKEN_SHAPE.test(token)) throw unreadable(image, 'the token has characters a header cannot carry');
    return { header: 'authorization', value: `Bearer ${token}`, authMethod: 'oauth_token' };
  }
  const key = env.ANTHROPIC_API_KEY;
  if (typeof key === 'string' && key) {
    if (!TOKEN_SHAPE.test(key)) throw unreadable(image, 'the API key has characters a header cannot carry');
    return { header: 'x-api-key', value: key, authMethod: 'api_key' };
  }
  throw unreadable(image, 'it holds no login (no .credentials.json, no setup-token, no API key)');
}

const READ_LOGIN = 'cat "$HOME/.claude/.credentials.json" 2>/dev/null; printf "\\0"; cat "$HOME/.claude/settings.json" 2>/dev/null; true';

/** Reads the login out of an authenticated image, in a throwaway container without network; its output stays in this process. */
export async function readImageCredential(engine: Engine, image: string): Promise<BrokerCredential> {
  const result = await engine.docker(
    ['run', '--rm', '--network', 'none', '--pull', 'never', ...labelArgs(temporaryLabels('broker-read')), '--entrypoint', 'sh', image, '-c', READ_LOGIN],
    { allowFailure: true, timeoutMs: config.timeouts.dockerRunMs },
  );
  // Never the output in a message: it holds the login.
  if (result.exitCode !== 0) throw unreadable(image, `reading it exited with ${result.exitCode}: ${result.stderr.trim().split('\n').pop() ?? ''}`);
  const [credentials = '', settings = ''] = result.stdout.split('\0');
  return credentialFromFiles(image, credentials, settings);
}

/** squid.conf of the broker: a reverse proxy to the API's host only, for the CLI's paths only, with the user's credential set. */
export function brokerSquidConfig(credential: BrokerCredential, dns: string[]): string {
  const header = credential.header === 'authorization' ? 'Authorization' : 'X-Api-Key';
  return `${[
    '# Written by para: the credential broker. Every request goes to the API host with the login set here.',
    `http_port 127.0.0.1:${SQUID_PORT} accel defaultsite=${API_HOST} no-vhost`,
    // forcedomain: whatever Host or absolute URL a request names, it goes to this peer, under this name.
    // TLS is socat's (OpenSSL: squid's GnuTLS build failed to read TLS 1.3 answers here): squid speaks HTTP to it on loopback.
    `cache_peer 127.0.0.1 parent ${TLS_PORT} 0 no-query no-digest no-netdb-exchange originserver name=api forcedomain=${API_HOST}`,
    'cache_peer_access api allow all',
    'never_direct allow all',
    ...SQUID_QUIET,
    ...(dns.length ? [`dns_nameservers ${dns.join(' ')}`] : []),
    'logformat para %tl %rm %>rp %>Hs %Ss',
    'access_log stdio:/dev/stdout para',
    'cache_log stdio:/dev/stderr',
    `acl para_paths urlpath_regex ${FORWARDED_PATHS.join(' ')}`,
    'acl para_methods method GET HEAD POST',
    'http_access deny !para_methods',
    'http_access deny !para_paths',
    'http_access allow all',
    // The agent's credentials never leave: every header that could carry one is dropped, then the user's is set.
    'request_header_access Authorization deny all',
    'request_header_access X-Api-Key deny all',
    'request_header_access Proxy-Authorization deny all',
    'request_header_access Cookie deny all',
    'request_header_access Surrogate-Capability deny all',
    `request_header_add ${header} "${credential.value}" all`,
    // A redirect is the client's to follow, and the client holds no credential; cookies stay with the broker.
    'reply_header_access Set-Cookie deny all',
    // squid's own reply headers name the broker's container: nothing the session needs.
    'reply_header_access X-Cache deny all',
    'reply_header_access X-Cache-Lookup deny all',
  ].join('\n')}\n`;
}

/**
 * The broker's own command (its user: the egress image's unprivileged one): it waits for para to
 * push its configuration into memory, builds its CA bundle (the system's and the host's extra CA),
 * then serves the socket. Either process ending ends the container.
 */
const BROKER_ENTRY = [
  'set -e; umask 077',
  `rm -f ${BROKER_VOLUME_DIR}/${SOCKET_NAME}`,
  `until [ -s ${STATE}/squid.conf ]; do sleep 0.1; done`,
  `cat /etc/ssl/certs/ca-certificates.crt ${STATE}/extra-ca.pem > ${STATE}/ca.pem 2>/dev/null || cp /etc/ssl/certs/ca-certificates.crt ${STATE}/ca.pem`,
  // squid reads the configuration as it is now: a reload asked before this point is done by its start.
  `rm -f ${STATE}/reload; squid -N -f ${STATE}/squid.conf & q=$!`,
  // OpenSSL checks the certificate against the CA bundle and the API's host name (SNI is sent).
  // Behind the host's proxy (its address pushed with the login, its password in a memory-only file), the TLS goes through a CONNECT tunnel.
  `if [ -s ${STATE}/upstream ]; then read -r uh up < ${STATE}/upstream; a=""; [ -s ${STATE}/proxy-auth ] && a=",proxyauthfile=${STATE}/proxy-auth"`,
  `  socat TCP-LISTEN:${TUNNEL_PORT},bind=127.0.0.1,reuseaddr,fork,max-children=128 "PROXY:$uh:${API_HOST}:443,proxyport=$up$a" & u=$!`,
  `  socat TCP-LISTEN:${TLS_PORT},bind=127.0.0.1,reuseaddr,fork,max-children=128 OPENSSL:127.0.0.1:${TUNNEL_PORT},cafile=${STATE}/ca.pem,verify=1,cn=${API_HOST},snihost=${API_HOST} & t=$!`,
  `else socat TCP-LISTEN:${TLS_PORT},bind=127.0.0.1,reuseaddr,fork,max-children=128 OPENSSL:${API_HOST}:443,cafile=${STATE}/ca.pem,verify=1 & t=$!; u=$t; fi`,
  `socat UNIX-LISTEN:${BROKER_VOLUME_DIR}/${SOCKET_NAME},fork,max-children=128,mode=600 TCP:127.0.0.1:${SQUID_PORT} & s=$!`,
  // A push asks for a reload (the reload file); squid gets its HUP only once it listens (a HUP while it starts would end it).
  // An empty table is gVisor's view of its sandbox: there the HUP is sent as asked.
  'while kill -0 "$s" 2>/dev/null && kill -0 "$q" 2>/dev/null && kill -0 "$t" 2>/dev/null && kill -0 "$u" 2>/dev/null; do',
  `  if [ -e ${STATE}/reload ] && awk 'NR > 1 { n++ } $2 ~ /:${hex(SQUID_PORT)}$/ && $4 == "0A" { f = 1 } END { exit !(f || n == 0) }' /proc/net/tcp; then rm -f ${STATE}/reload; kill -HUP "$q"; fi`,
  '  sleep 0.2',
  'done',
  'kill "$s" "$q" "$t" "$u" 2>/dev/null; exit 1',
].join('\n');

/**
 * Pushes a configuration (standard input: the config, the source, the host proxy's address and its
 * login, then the extra CA; the lengths of the first four are arguments) and asks the broker's own
 * loop to reload squid. The proxy's address and login are read once, when the broker starts.
 */
const PUSH = [
  'set -e; umask 077',
  `d=${STATE}`,
  // GNU head -c reads no further than it is asked: each part goes to its own file, the rest to the next.
  // Parallel starts push at once: each push writes files of its own ($$), then moves them in place.
  'n=".next.$$"; head -c "$1" > "$d/squid.conf$n"; head -c "$2" > "$d/source$n"; head -c "$3" > "$d/upstream$n"; head -c "$4" > "$d/proxy-auth$n"; cat > "$d/extra-ca.pem$n"',
  'for f in upstream proxy-auth extra-ca.pem source squid.conf; do mv -f "$d/$f$n" "$d/$f"; done',
  // The broker's own loop reloads squid once it can; the push waits for that (a while at most: a broker still starting reads the new files anyway).
  ': > "$d/reload"; i=0; while [ -e "$d/reload" ] && [ "$i" -lt 100 ]; do sleep 0.1; i=$((i + 1)); done',
].join('\n');

export interface BrokerState {
  container: string;
  /** running: serving the login of `source`; absent: none was made. */
  state: 'running' | 'stopped' | 'missing' | 'foreign';
  /** What it serves: the login image's ID, then `host:<expiresAt>` when it serves the host's newer login. */
  source?: string;
  /** The running container's ID and start time (what para pushed to it is remembered under them). */
  id?: string;
  startedAt?: string;
  /** The host proxy it goes through (host:port; empty: none), read when it was made. */
  upstream?: string;
}

/** What a broker serving this login says it serves (its source): the login image's ID, and the host login's expiry when it follows the host. */
export function servedSource(imageId: string, host: HostLogin | undefined): string {
  return host ? `${imageId} host:${host.expiresAt}` : imageId;
}

/** The host login a broker serves instead of its image's, from its source (undefined: the image's). */
export function servedHostExpiry(source: string | undefined): number | undefined {
  const from = source?.split(' ')[1];
  return from?.startsWith('host:') ? Number(from.slice(5)) : undefined;
}

/** What the broker serves: read from its memory (one exec). */
async function loadedSource(engine: Engine, container: string, user: string): Promise<string | undefined> {
  const r = await engine.exec(container, ['sh', '-c', `cat ${STATE}/source 2>/dev/null; true`], {
    user,
    allowFailure: true,
    timeoutMs: config.timeouts.dockerQuickMs,
  });
  return r.exitCode === 0 ? r.stdout.trim() || undefined : undefined;
}

export function brokerState(engine: Engine, network: string | null, image: string): Promise<BrokerState> {
  return namedBrokerState(engine, brokerNames(network, image).container);
}

/** A broker's state from its container's inspect (absent: none was made; not labelled as one: someone else's). */
export function brokerStatus(info: ContainerInfo | undefined): BrokerState['state'] {
  if (info?.Config.Labels?.[labels.role] !== 'broker') return info ? 'foreign' : 'missing';
  return info.State.Running ? 'running' : 'stopped';
}

async function namedBrokerState(engine: Engine, container: string): Promise<BrokerState> {
  const info = await engine.inspectContainer(container);
  const state = brokerStatus(info);
  const upstream = info?.Config.Labels?.[labels.brokerUpstream] ?? '';
  if (!info || state !== 'running') return { container, state, ...(state === 'stopped' ? { upstream } : {}) };
  return {
    container,
    state: 'running',
    upstream,
    source: await loadedSource(engine, container, info.Config.User || 'proxy'),
    id: info.Id,
    startedAt: info.State.StartedAt,
  };
}

/**
 * The host's subscription login (where make image reads it: ~/.claude or the macOS Keychain), when
 * there is one with an account and an expiry. Never throws: a host without one is the usual case.
 */
export interface HostLogin {
  credential: BrokerCredential;
  expiresAt: number;
  account: string;
}

export async function readHostLogin(): Promise<HostLogin | undefined> {
  try {
    const found = await discoverCredentials();
    if (found.kind !== 'subscription' || !found.account || found.expiresAt === undefined) return undefined;
    const text = found.files.find((f) => f.path === '.claude/.credentials.json')?.content ?? '';
    return { credential: credentialFromFiles('the host', text, ''), expiresAt: found.expiresAt, account: found.account };
  } catch {
    return undefined;
  }
}

/**
 * Follow the host: a login make image copied from the host is the host's claude's to refresh
 * (refresh tokens are single use; a second holder refreshing it would log the host out). Neither
 * para nor the broker ever refreshes it; when the host holds a newer login of the same account,
 * the broker serves that one. Returns the host login to serve, or undefined (the image's).
 */
export function followsHost(info: ImageInfo, host: HostLogin | undefined): HostLogin | undefined {
  const l = info.Config.Labels ?? {};
  if (!host || l[labels.credentialsSource] !== 'subscription' || l[labels.credentialsAccount] !== host.account) return undefined;
  const baked = Date.parse(l[labels.credentialsExpiresAt] ?? '');
  return !Number.isFinite(baked) || host.expiresAt > baked ? host : undefined;
}

/** What para last pushed to a running broker (its ID and start time: a restarted one has lost it), so list and watch need no exec to know. */
function pushedFile(id: string, startedAt: string): string {
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'para', 'brokers', createHash('sha256').update(`${id}\n${startedAt}`).digest('hex').slice(0, 24));
}

async function rememberPushed(state: BrokerState): Promise<void> {
  // Only a broker following the host is looked at without an exec.
  if (!state.id || !state.startedAt || !state.source || servedHostExpiry(state.source) === undefined) return;
  const file = pushedFile(state.id, state.startedAt);
  await fs.outputFile(file, state.source, { mode: 0o600 }).catch(() => undefined);
}

function egressUserOf(info: ImageInfo | undefined): string {
  const user = info?.Config.Labels?.[labels.egressUser];
  if (!user || !/^\d+:\d+$/.test(user))
    throw new ParaError(
      `the egress proxy image ${config.egressImage} ${info ? "is not para's (no egress user label)" : 'does not exist'}: the proxy and the credential broker run from it`,
      {
        code: 'egress-image-missing',
        hint: `run: ${makeCommand('image')} (it builds the proxy image too), or start with --egress none`,
      },
    );
  return user;
}

async function push(engine: Engine, container: string, user: string, credential: BrokerCredential, source: string, upstream: Upstream | null): Promise<void> {
  const ca = await extraCaText();
  const conf = brokerSquidConfig(credential, egressDns());
  const address = upstream ? `${upstream.host} ${upstream.port}\n` : '';
  const login = upstream?.login ?? '';
  const input = `${conf}${source}${address}${login}${ca}`;
  const lengths = [conf, source, address, login].map((part) => String(Buffer.byteLength(part)));
  const r = await engine.exec(container, ['sh', '-c', PUSH, 'para-broker-push', ...lengths], {
    user,
    input,
    allowFailure: true,
    timeoutMs: config.timeouts.dockerQuickMs,
  });
  if (r.exitCode !== 0)
    throw new ParaError(`the credential broker ${container} did not take its login: ${r.stderr.trim() || `exit code ${r.exitCode}`}`, { code: 'broker-push' });
}

/**
 * The host's proxy the broker goes through to the API (HTTPS_PROXY, as the session's proxy does):
 * none when NO_PROXY names the API's host, when it is unset or unusable (the session's proxy says
 * why), or when it listens on the host's loopback, which the broker's network cannot reach.
 */
export function brokerUpstream(network: string | null): Upstream | null {
  let upstream: Upstream | null;
  try {
    upstream = hostUpstream();
  } catch {
    return null;
  }
  if (!upstream || upstream.direct.some((d) => API_HOST === d || API_HOST.endsWith(`.${d}`))) return null;
  if (network !== 'host' && /^(localhost|127\.|::1$|\[::1\])/i.test(upstream.host)) return null;
  return upstream;
}

/** The host's extra CA (NODE_EXTRA_CA_CERTS: a corporate network's), for what para runs that reaches the login service. */
export async function extraCaText(): Promise<string> {
  const file = process.env.NODE_EXTRA_CA_CERTS;
  if (!file) return '';
  const text = await fs.readFile(file, 'utf8').catch(() => '');
  return text.includes('-----BEGIN CERTIFICATE-----') && !/PRIVATE KEY/.test(text) ? text : '';
}

/** Whether squid in the broker answers on its socket's side (a request for a path it never forwards: its 403). */
async function waitForSquid(engine: Engine, container: string, user: string): Promise<void> {
  // socat's TLS port must listen too (squid answering alone is not enough: a request in between would find no way to the API).
  // An empty table is gVisor's view of its sandbox (a default runtime of runsc): squid's answer alone tells there.
  const tls = hex(TLS_PORT);
  const probe = `i=0; until [ -S ${BROKER_VOLUME_DIR}/${SOCKET_NAME} ] && awk 'NR > 1 { n++ } $2 ~ /:${tls}$/ && $4 == "0A" { f = 1 } END { exit !(f || n == 0) }' /proc/net/tcp && bash -c 'exec 3<>/dev/tcp/127.0.0.1/${SQUID_PORT} && printf "GET /para-probe HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n" >&3 && timeout 2 head -n 1 <&3 | grep -q " 403"' 2>/dev/null; do i=$((i+1)); [ "$i" -ge 200 ] && exit 1; sleep 0.1; done`;
  const r = await engine.exec(container, ['sh', '-c', probe], { user, allowFailure: true, timeoutMs: 40_000 });
  if (r.exitCode !== 0) {
    const logs = await engine.docker(['logs', '--tail', '5', container], { allowFailure: true });
    throw new ParaError(`the credential broker ${container} did not start: ${logs.stderr.trim().split('\n').pop() ?? 'no answer'}`, {
      code: 'broker-start',
      hint: `see docker logs ${container}; run ${makeCommand('doctor')}`,
    });
  }
}

/**
 * Makes sure the engine's broker for this network runs and serves the login of `image` (an
 * authenticated image: para-authenticated, or --image): creates it, starts a stopped one, or pushes
 * a newer login into a running one (running sessions use it at their next request). The fast path
 * (it runs, with this login) costs one inspect and one exec. Safe to call from parallel starts.
 */
export async function ensureBroker(
  engine: Engine,
  image: string,
  network: string | null,
  options: {
    host?: Promise<HostLogin | undefined>;
    /** A broker of its own (the online check of an image not yet tagged): its name, and labels that mark it temporary. */
    own?: { name: string; labels: Record<string, string> };
  } = {},
): Promise<BrokerState> {
  const { container, volume } = options.own ? ownBrokerNames(options.own.name) : brokerNames(network, image);
  const madeLabels = options.own ? { ...brokerLabels(network, image), ...options.own.labels } : brokerLabels(network, image);
  const [imageInfo, egressInfo, hostLogin] = await Promise.all([
    engine.inspectImage(image),
    engine.inspectImage(config.egressImage),
    options.host ?? readHostLogin(),
  ]);
  if (!imageInfo)
    throw new ParaError(`the image ${image} does not exist: the credential broker takes its login from it`, {
      code: 'image-missing',
      hint: `run: ${makeCommand('image')}`,
    });
  const user = egressUserOf(egressInfo);
  const upstream = brokerUpstream(network);
  const upstreamLabel = upstream ? `${upstream.host}:${upstream.port}` : '';
  const host = followsHost(imageInfo, hostLogin);
  const source = servedSource(imageInfo.Id, host);
  const stateOf = () => (options.own ? namedBrokerState(engine, container) : brokerState(engine, network, image));
  let current = await stateOf();
  // A host proxy other than the one the broker was made with (it reads it once): it is made again, on the same socket volume.
  // A shell without one leaves a broker made behind one as it is.
  if ((current.state === 'running' || current.state === 'stopped') && upstreamLabel && (current.upstream ?? '') !== upstreamLabel) {
    await engine.removeContainer(container, { force: true });
    current = await stateOf();
  }
  if (current.state === 'running' && current.source === source) {
    await rememberPushed(current);
    return current;
  }
  const [uid, gid] = user.split(':').map(Number);
  const foreign = () =>
    new ParaError(`a container named ${container} exists and is not para's credential broker: para gives it no login`, {
      code: 'broker-name-taken',
      hint: `remove or rename it (docker rm -f ${container}), or set PARA_BROKER to another name`,
    });
  if (current.state === 'foreign') throw foreign();
  if (current.state === 'missing') {
    const spec: RunSpec = {
      image: config.egressImage,
      name: container,
      labels: { ...madeLabels, [labels.brokerUpstream]: upstreamLabel },
      network,
      ...hardened(user),
      tmpfs: [{ target: STATE, uid, gid, mode: '0700', size: '4m' }],
      dns: egressDns(),
      mounts: [{ type: 'volume', source: volume, target: BROKER_VOLUME_DIR, readonly: false, labels: madeLabels, copyFromImage: true }],
      command: ['sh', '-c', BROKER_ENTRY],
    };
    const made = await engine.run(spec, { detach: true, allowFailure: true, timeoutMs: config.timeouts.dockerRunMs });
    // Another start made it meanwhile: that one is used.
    if (made.exitCode !== 0 && !/Conflict|already in use/i.test(made.stderr)) {
      throw new ParaError(`the credential broker ${container} could not be made: ${made.stderr.trim().split('\n').pop()}`, {
        code: 'broker-start',
        hint: `run ${makeCommand('doctor')}`,
      });
    }
  } else if (current.state === 'stopped') {
    await engine.docker(['start', container], { allowFailure: true, timeoutMs: config.timeouts.dockerRunMs });
  }
  // Made by a parallel start (it may still be starting), or by something else under this name: only a labelled broker gets the login.
  for (let i = 0; i < 100; i += 1) {
    const now = await stateOf();
    if (now.state === 'foreign') throw foreign();
    if (now.state === 'running') break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const credential = host?.credential ?? (await readImageCredential(engine, image));
  await push(engine, container, user, credential, source, upstream);
  await waitForSquid(engine, container, user);
  const info = await engine.inspectContainer(container);
  current = { container, state: 'running', source, id: info?.Id, startedAt: info?.State.StartedAt };
  await rememberPushed(current);
  return current;
}

/**
 * list, watch, the doctor: each running broker whose login the host has renewed since make image
 * takes the host's newer one (running sessions use it from their next request). Costs nothing
 * without a host login, and no exec when para already pushed it. Returns the brokers that took it.
 */
export async function followHostLogin(engine: Engine): Promise<{ moved: string[]; host: HostLogin | undefined }> {
  const host = await readHostLogin();
  if (!host) return { moved: [], host };
  const brokers = (await engine.listContainers({ [labels.role]: 'broker' })).filter((c) => c.State.Running);
  const images = new Map<string, Promise<ImageInfo | undefined>>();
  const moved: string[] = [];
  for (const broker of brokers) {
    const name = broker.Name.replace(/^\//, '');
    const image = broker.Config.Labels?.[labels.brokerImage];
    const network = broker.Config.Labels?.[labels.brokerNetwork] || null;
    if (!image || brokerNames(network, image).container !== name) continue;
    if (!images.has(image)) images.set(image, engine.inspectImage(image));
    const info = await images.get(image);
    if (!info || !followsHost(info, host)) continue;
    const pushed = await fs.readFile(pushedFile(broker.Id, broker.State.StartedAt), 'utf8').catch(() => '');
    if (pushed === servedSource(info.Id, host)) continue;
    await ensureBroker(engine, image, network, { host: Promise.resolve(host) });
    moved.push(name);
  }
  return { moved, host };
}

/** What a session needs to reach the broker: the forwarder's mount of the broker's socket, and the address it serves. */
export function brokerForwarding(network: string | null, image: string, own?: string): { volume: string; socket: string } {
  return { volume: (own ? ownBrokerNames(own) : brokerNames(network, image)).volume, socket: `${BROKER_SOCKET_DIR}/${SOCKET_NAME}` };
}

/** Whether the broker's log (since a time) shows a Messages request that reached the API (squid's status: not its own 5xx for an upstream it could not reach). */
export async function brokerReachedApi(engine: Engine, container: string, since: string): Promise<boolean> {
  const log = await engine.docker(['logs', '--since', since, container], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
  return log.stdout.split('\n').some((line) => / \/v1\/messages\S* (\d{3}) /.test(line) && !/ \/v1\/messages\S* (502|503|504) /.test(line));
}

/** The words of every placeholder credential: shaped as claude expects a token or key, plainly none. */
const PLACEHOLDER = 'PARA-BROKER-PLACEHOLDER-NOT-A-SECRET';

/**
 * A session's stand-in for the login: the same kind (claude auth status says logged in, with the
 * same method), worth nothing anywhere. Environment values and files; none is a secret.
 */
export function placeholderLogin(
  authMethod: string | undefined,
  subscriptionType?: string,
): {
  env: Record<string, string>;
  files: Array<{ path: string; content: string }>;
  approvedKey?: string;
} {
  const env = { ANTHROPIC_BASE_URL: BROKER_URL };
  if (authMethod === 'api_key') {
    const key = `sk-ant-api03-${PLACEHOLDER}`;
    return { env: { ...env, ANTHROPIC_API_KEY: key }, files: [], approvedKey: key.slice(-20) };
  }
  if (authMethod === 'oauth_token') return { env: { ...env, CLAUDE_CODE_OAUTH_TOKEN: `sk-ant-oat01-${PLACEHOLDER}` }, files: [] };
  const login = {
    claudeAiOauth: {
      accessToken: `sk-ant-oat01-${PLACEHOLDER}`,
      refreshToken: 'para-broker-placeholder-no-refresh',
      // Far ahead: claude in the session never tries to refresh (the broker's login is the one that expires).
      expiresAt: 4102444800000,
      scopes: ['user:inference', 'user:profile'],
      ...(subscriptionType ? { subscriptionType } : {}),
    },
  };
  return { env, files: [{ path: '.claude/.credentials.json', content: `${JSON.stringify(login)}\n` }] };
}

/**
 * After make image or make login moved `tag`: every running broker on the engine that serves that
 * name takes the new login now, so running sessions use it from their next request. Returns the
 * brokers updated.
 */
export async function refreshBrokers(engine: Engine, tag: string): Promise<string[]> {
  const brokers = (await engine.listContainers({ [labels.role]: 'broker', [labels.brokerImage]: tag })).filter((c) => c.State.Running);
  const updated: string[] = [];
  for (const broker of brokers) {
    const name = broker.Name.replace(/^\//, '');
    const network = broker.Config.Labels?.[labels.brokerNetwork] || null;
    if (brokerNames(network, tag).container !== name) continue;
    const before = await loadedSource(engine, name, broker.Config.User || 'proxy');
    const state = await ensureBroker(engine, tag, network);
    if (state.source !== before) updated.push(name);
  }
  return updated;
}

/** A broker no container uses: no session's forwarder (running or stopped) mounts its socket volume. */
export interface IdleBroker {
  name: string;
  volume: string;
}

/** The engine's brokers that no session of any repository uses (para clean removes them; the next start makes one again). */
export async function idleBrokers(engine: Engine): Promise<IdleBroker[]> {
  const idle: IdleBroker[] = [];
  for (const broker of await engine.listContainers({ [labels.managedBy]: MANAGED_BY, [labels.role]: 'broker' })) {
    const name = broker.Name.replace(/^\//, '');
    const image = broker.Config.Labels?.[labels.brokerImage];
    const network = broker.Config.Labels?.[labels.brokerNetwork] || null;
    // An online check's own broker is its check's to remove (or the sweep's).
    if (!image || broker.Config.Labels?.[labels.temporary] || brokerNames(network, image).container !== name) continue;
    const { volume } = brokerNames(network, image);
    const users = await engine.docker(['ps', '--all', '--quiet', '--no-trunc', '--filter', `volume=${volume}`], { timeoutMs: config.timeouts.dockerQuickMs });
    if (users.stdout.split('\n').some((id) => id && id !== broker.Id)) continue;
    idle.push({ name, volume });
  }
  return idle;
}

/** Removes an idle broker and its socket volume, after looking once more that nothing uses it. */
export async function removeIdleBroker(engine: Engine, broker: IdleBroker): Promise<boolean> {
  if (!(await idleBrokers(engine)).some((b) => b.name === broker.name)) return false;
  await engine.removeContainer(broker.name, { force: true });
  const volume = await engine.inspectVolume(broker.volume);
  if (volume?.Labels?.[labels.role] === 'broker') await engine.removeVolume(broker.volume);
  return true;
}
