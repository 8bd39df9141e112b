// A session's way out. By default (allowlist) the session container has no network at all; a
// proxy sidecar (squid) on the network that reaches the outside admits CONNECTs to port 443 of
// allowed host names only, and reaches the session solely through a unix socket in a volume of
// its own, which a forwarder in the session's network namespace serves on 127.0.0.1. The agent
// can neither touch the proxy's configuration nor route around it: it has no interface but lo.
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import fs from 'fs-extra';
import { config, labels } from '../config.ts';
import {
  docker,
  inspectContainer,
  inspectImage,
  labelArgs,
  removeContainer,
  removeVolume,
  inspectVolume,
  type ContainerInfo,
  type ImageInfo,
} from '../docker.ts';
import { ParaError, UsageError } from '../errors.ts';
import { makeCommand } from '../cli.ts';
import { tarArchive } from '../tar.ts';
import { labelledFor, mountArg, sessionLabels, type Mount } from './container.ts';
import type { Repo, SessionPaths } from './paths.ts';

export type EgressMode = 'allowlist' | 'open' | 'none';
export const EGRESS_MODES: EgressMode[] = ['allowlist', 'open', 'none'];

/**
 * What the claude CLI itself needs, seen by running the real CLI (2.1.197) against a logging proxy
 * that refused everything: api.anthropic.com in every mode (API key, setup-token, subscription);
 * platform.claude.com when a subscription login refreshes its access token.
 */
export const DEFAULT_ALLOWED_HOSTS = ['api.anthropic.com', 'platform.claude.com'];

/** The committed, team-wide list of extra hosts, read from the main checkout only. */
export const REPO_ALLOW_FILE = path.join('.para', 'allowed-hosts');

/** The port the forwarder serves inside the session, and the proxy variables that name it. */
export const SESSION_PROXY_PORT = 3128;
const PROXY_URL = `http://127.0.0.1:${SESSION_PROXY_PORT}`;

/** Where the proxy's configuration and socket live, in its own volume. */
const EGRESS_DIR = '/para-egress';
const SOCKET = `${EGRESS_DIR}/proxy.sock`;

export interface EgressState {
  mode: EgressMode;
  /** Hosts added for this session (--allow), kept for a resume. */
  allow: string[];
  /** Every pattern the proxy admits: the default list, the repository's file and --allow. */
  hosts: string[];
  /** The host's proxy the session's proxy chains to (host:port, never credentials). */
  upstream: string | null;
}

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Checks one allowlist entry: a host name, or *.suffix for its subdomains. Returns the problem. */
export function hostPatternProblem(raw: string): string | undefined {
  const pattern = normalizeHost(raw);
  const name = pattern.startsWith('*.') ? pattern.slice(2) : pattern;
  if (pattern.length === 0) return 'an empty host name';
  if (name.length > 253) return `${JSON.stringify(raw)} is longer than a host name can be`;
  const parts = name.split('.');
  if (!parts.every((part) => LABEL.test(part)))
    return `${JSON.stringify(raw)} is not a host name (letters, digits and "-" between dots; a wildcard only as a leading "*.")`;
  if (/^(\d+|0x[0-9a-f]+)$/.test(parts[parts.length - 1])) return `${JSON.stringify(raw)} is an address: the proxy admits host names only`;
  if (pattern.startsWith('*.') && parts.length < 2) return `${JSON.stringify(raw)} would admit a whole top-level domain`;
  return undefined;
}

export function normalizeHost(raw: string): string {
  return raw.trim().toLowerCase().replace(/\.$/, '');
}

/** An anchored, case-insensitive regular expression for squid's dstdom_regex. */
export function hostRegex(pattern: string): string {
  const dots = (text: string) => text.replace(/[.]/g, '\\.');
  if (pattern.startsWith('*.')) return `^([a-z0-9-]+\\.)+${dots(pattern.slice(2))}$`;
  return `^${dots(pattern)}$`;
}

/** Whether a host name is admitted by a pattern list (the rule the proxy applies, for messages and tests). */
export function hostAllowed(host: string, patterns: string[]): boolean {
  const name = normalizeHost(host);
  return patterns.some((pattern) => new RegExp(hostRegex(pattern), 'i').test(name));
}

/** The repository's own list: one host per line, "#" comments. A symlink or a huge file is refused. */
export async function readRepoAllowlist(repo: Repo): Promise<{ file: string; hosts: string[] }> {
  const file = path.join(repo.root, REPO_ALLOW_FILE);
  const stat = await fs.lstat(file).catch(() => undefined);
  if (!stat) return { file, hosts: [] };
  if (!stat.isFile())
    throw new ParaError(`${file} is not a regular file`, { code: 'allowlist-invalid', hint: 'make it a plain file with one host name per line' });
  if (stat.size > 64 * 1024) throw new ParaError(`${file} is larger than 64 KiB`, { code: 'allowlist-invalid', hint: 'list one host name per line' });
  const hosts: string[] = [];
  const lines = (await fs.readFile(file, 'utf8')).split('\n');
  for (const [index, line] of lines.entries()) {
    const text = line.replace(/#.*/, '').trim();
    if (!text) continue;
    const problem = hostPatternProblem(text);
    if (problem)
      throw new ParaError(`${file} line ${index + 1}: ${problem}`, { code: 'allowlist-invalid', hint: 'fix that line: one host name or *.domain per line' });
    hosts.push(normalizeHost(text));
  }
  return { file, hosts };
}

export function checkAllow(values: string[]): string[] {
  const hosts: string[] = [];
  for (const value of values) {
    for (const part of value.split(/[\s,]+/).filter(Boolean)) {
      const problem = hostPatternProblem(part);
      if (problem) throw new UsageError(`--allow ${problem}`, 'give a host name such as registry.npmjs.org, or *.example.com for its subdomains');
      hosts.push(normalizeHost(part));
    }
  }
  return [...new Set(hosts)];
}

export async function egressHosts(repo: Repo, allow: string[]): Promise<string[]> {
  const own = await readRepoAllowlist(repo);
  return [...new Set([...DEFAULT_ALLOWED_HOSTS, ...own.hosts, ...allow])];
}

// ---- the host's own proxy ---------------------------------------------------------------------

export interface Upstream {
  host: string;
  port: number;
  /** user:password, for the proxy's configuration file only (never an argument or environment). */
  login: string | null;
  /** Host names the host reaches without its proxy (NO_PROXY). */
  direct: string[];
}

/** The host's HTTPS_PROXY (or HTTP_PROXY), which the session's proxy then goes through. */
export function hostUpstream(env: NodeJS.ProcessEnv = process.env): Upstream | null {
  const raw = env.HTTPS_PROXY || env.https_proxy || env.HTTP_PROXY || env.http_proxy;
  if (!raw) return null;
  let url: URL;
  try {
    url = new URL(raw.includes('://') ? raw : `http://${raw}`);
  } catch {
    throw new UsageError('the host proxy setting (HTTPS_PROXY) is not a URL', 'set it to http://HOST:PORT, or unset it');
  }
  if (url.protocol !== 'http:')
    throw new UsageError(`the host proxy setting (HTTPS_PROXY) uses ${url.protocol}, which the session proxy cannot chain to`, 'use an http:// proxy address');
  const login = url.username ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` : null;
  if (login && /[\s"]/.test(login))
    throw new UsageError('the host proxy setting (HTTPS_PROXY) has a user or password with spaces or quotes', 'the session proxy cannot pass it on');
  const noProxy = (env.NO_PROXY || env.no_proxy || '')
    .split(',')
    .map((entry) =>
      entry
        .trim()
        .toLowerCase()
        .replace(/^\*?\./, '')
        .replace(/:\d+$/, ''),
    )
    .filter((entry) => entry && !hostPatternProblem(entry));
  return { host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 80), login, direct: noProxy };
}

// ---- the proxy's configuration ----------------------------------------------------------------

/** Cloud metadata services outside link-local (Alibaba, Oracle, Azure's wire server, AWS over IPv6). */
const METADATA = ['100.100.100.200', '192.0.0.192', '168.63.129.16', 'fd00:ec2::254'];

/** Addresses the proxy never connects to, whatever a name resolves to: the Docker host, itself, metadata services. */
export function blockedAddresses(hostAddresses: string[]): string[] {
  const fixed = ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '::/128', '::1', 'fe80::/10', ...METADATA];
  return [...new Set([...fixed, ...hostAddresses.map((address) => address.replace(/%.*$/, ''))])];
}

/**
 * Every address of this machine, the link-down ones too (a Docker bridge with no container is
 * down, yet its address is the host's): Node's list of the interfaces that are up, and on Linux
 * the kernel's own tables of local IPv4 (/proc/net/fib_trie) and IPv6 (/proc/net/if_inet6) addresses.
 */
export async function localAddresses(): Promise<string[]> {
  const found = new Set<string>();
  for (const entry of Object.values(networkInterfaces()).flat()) if (entry) found.add(entry.address.replace(/%.*$/, ''));
  const trie = await fs.readFile('/proc/net/fib_trie', 'utf8').catch(() => '');
  let last = '';
  for (const line of trie.split('\n')) {
    const leaf = /\|--\s+(\d+\.\d+\.\d+\.\d+)/.exec(line);
    if (leaf) last = leaf[1];
    else if (/\/32 host LOCAL/.test(line) && last) found.add(last);
  }
  const inet6 = await fs.readFile('/proc/net/if_inet6', 'utf8').catch(() => '');
  for (const line of inet6.split('\n')) {
    const hex = line.trim().split(/\s+/)[0];
    if (hex && /^[0-9a-f]{32}$/.test(hex))
      found.add(
        hex
          .match(/.{4}/g)!
          .map((group) => group.replace(/^0{1,3}/, ''))
          .join(':'),
      );
  }
  return [...found];
}

/** The first address of a subnet: Docker's gateway when a network's IPAM names none. */
export function impliedGateway(subnet: string): string | undefined {
  const v4 = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(subnet);
  if (v4) {
    const value = v4.slice(1, 5).reduce((acc, part) => acc * 256 + Number(part), 0);
    const bits = Number(v4[5]);
    const base = bits === 0 ? 0 : value - (value % 2 ** (32 - bits));
    const first = base + 1;
    return [24, 16, 8, 0].map((shift) => Math.floor(first / 2 ** shift) % 256).join('.');
  }
  const v6 = /^([0-9a-f:]+)::\/\d+$/i.exec(subnet);
  return v6 ? `${v6[1]}::1` : undefined;
}

export interface ProxyConfig {
  hosts: string[];
  blocked: string[];
  upstream: Upstream | null;
  port: number;
  /** DNS servers for the proxy (PARA_EGRESS_DNS), else the container's own resolver. */
  dns: string[];
}

/** squid.conf: CONNECT to 443 of an allowed name that does not resolve to a blocked address; nothing else. */
export function squidConfig(cfg: ProxyConfig): string {
  const lines = [
    '# Written by para for one session; every request not admitted below is refused.',
    `http_port 127.0.0.1:${cfg.port}`,
    'pid_filename none',
    'pinger_enable off',
    'cache deny all',
    'cache_mem 0 MB',
    'memory_pools off',
    'client_db off',
    'ipcache_size 256',
    'fqdncache_size 64',
    'logfile_rotate 0',
    'coredump_dir none',
    'shutdown_lifetime 1 seconds',
    'via off',
    'forwarded_for delete',
    'httpd_suppress_version_string on',
    // One line per request: time, method, target, status, squid's verdict and para's reason.
    'logformat para %tl %rm %ru %>Hs %Ss %{reason}note',
    'access_log stdio:/dev/stdout para',
    'cache_log stdio:/dev/stderr',
    ...(cfg.dns.length ? [`dns_nameservers ${cfg.dns.join(' ')}`] : []),
    'acl para_connect method CONNECT',
    'acl para_tls port 443',
    // -n: never look a name (or an address) up to decide whether it is on the list.
    `acl para_allowed dstdom_regex -n -i ${cfg.hosts.map(hostRegex).join(' ')}`,
    `acl para_blocked dst ${cfg.blocked.join(' ')}`,
    'acl para_why_method annotate_transaction reason=refused:only-CONNECT-is-allowed',
    'acl para_why_port annotate_transaction reason=refused:only-port-443',
    'acl para_why_host annotate_transaction reason=refused:host-not-in-allowlist',
    'acl para_why_address annotate_transaction reason=refused:resolves-to-a-docker-host-or-link-local-address',
    'acl para_why_ok annotate_transaction reason=allowed',
    // Order matters: names are judged before any lookup; only an allowed name is resolved.
    'http_access deny !para_connect para_why_method',
    'http_access deny !para_tls para_why_port',
    'http_access deny !para_allowed para_why_host',
    'http_access deny para_blocked para_why_address',
    'http_access allow para_why_ok',
    'http_access deny all',
    'http_reply_access allow all',
  ];
  const up = cfg.upstream;
  if (up) {
    lines.push(`cache_peer ${up.host} parent ${up.port} 0 no-query no-digest no-netdb-exchange default name=upstream${up.login ? ` login=${up.login}` : ''}`);
    if (up.direct.length) {
      lines.push(`acl para_direct dstdomain -n ${up.direct.map((d) => `.${d}`).join(' ')}`, 'always_direct allow para_direct');
    }
    lines.push('never_direct allow all');
  }
  return `${lines.join('\n')}\n`;
}

// ---- containers -------------------------------------------------------------------------------

/** Whose proxy: the container it serves, the names of its pieces and the labels they all carry. */
export interface EgressOwner {
  container: string;
  proxy: string;
  forwarder: string;
  egressVolume: string;
  labels: Record<string, string>;
}

export function sessionEgressOwner(repo: Repo, paths: SessionPaths): EgressOwner {
  return {
    container: paths.container,
    proxy: paths.proxy,
    forwarder: paths.forwarder,
    egressVolume: paths.egressVolume,
    labels: sessionLabels(paths.name, repo),
  };
}

export interface EgressPlan {
  image: string;
  /** uid:gid of the image's proxy user (its label). */
  user: string;
  /** The network the proxy sits on (null: Docker's default). */
  network: string | null;
  config: ProxyConfig;
}

/**
 * How many connections each socat serves at once: more wait in the kernel's backlog. Without a
 * cap, an agent opening hundreds of connections made socat's fork fail against the pids limit,
 * and socat exits then, leaving the port to be squatted.
 */
const MAX_CONNECTIONS = 64;

function runtimeOptions(user: string): string[] {
  return [
    '--read-only',
    '--user',
    user,
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    '--init',
    '--memory',
    '256m',
    '--pids-limit',
    '256',
    // The agent can make the proxy log as fast as it sends requests: the log is capped.
    '--log-driver',
    'json-file',
    '--log-opt',
    'max-size=10m',
    '--log-opt',
    'max-file=2',
  ];
}

function egressUser(image: string, info: ImageInfo): string {
  const user = info.Config.Labels?.[labels.egressUser];
  if (!user || !/^\d+:\d+$/.test(user))
    throw new ParaError(`${image} is not para's egress proxy image (no ${labels.egressUser} label)`, {
      code: 'egress-image',
      hint: `run: ${makeCommand('image')}`,
    });
  return user;
}

export function missingEgressImage(image: string): ParaError {
  return new ParaError(`the egress proxy image ${image} does not exist`, {
    code: 'egress-image-missing',
    hint: `run: ${makeCommand('image')} (it builds the proxy too), or start with --egress none`,
  });
}

/**
 * The Docker host's addresses as its containers see them: the gateway of every docker network
 * (named, or implied by the subnet), and, for a local engine, every address of this machine.
 * Checks first that the proxy's own network exists.
 */
export async function dockerHostAddresses(network: string | null, remote = false): Promise<string[]> {
  const listed = await docker(['network', 'ls', '--no-trunc', '--format', '{{.ID}} {{.Name}}'], { timeoutMs: config.timeouts.dockerQuickMs });
  const networks = listed.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' '));
  if (network && network !== 'host' && !networks.some(([id, name]) => name === network || id === network || id.startsWith(network))) {
    throw new ParaError(`the docker network ${network} does not exist`, {
      code: 'egress-network-missing',
      hint: `create it (docker network create ${network}) or choose another --egress-network`,
    });
  }
  // This machine's own addresses are the engine's only when the engine runs here.
  const addresses = new Set<string>(remote ? [] : await localAddresses());
  if (networks.length) {
    const inspected = await docker(['network', 'inspect', '--format', '{{json .IPAM.Config}}', ...networks.map(([id]) => id)], {
      allowFailure: true,
      timeoutMs: config.timeouts.dockerQuickMs,
    });
    for (const line of inspected.stdout.split('\n').filter((l) => l.startsWith('['))) {
      try {
        for (const entry of JSON.parse(line) as Array<{ Gateway?: string; Subnet?: string }>) {
          const gateway = entry.Gateway || (entry.Subnet ? impliedGateway(entry.Subnet) : undefined);
          if (gateway) addresses.add(gateway);
        }
      } catch {
        // a network docker cannot describe has no gateway to add
      }
    }
  }
  return [...addresses];
}

/**
 * Starts the session's proxy. Its configuration is an argument when it holds nothing secret; with
 * the host proxy's password it goes into the proxy's own volume by docker cp before the start,
 * never into an argument or the environment.
 */
export async function createProxy(owner: EgressOwner, plan: EgressPlan): Promise<void> {
  const [uid, gid] = plan.user.split(':').map(Number);
  const secret = Boolean(plan.config.upstream?.login);
  const args = [secret ? 'create' : 'run', ...(secret ? [] : ['--detach']), '--name', owner.proxy];
  args.push(...labelArgs({ ...owner.labels, [labels.role]: 'egress-proxy' }));
  if (plan.network) args.push('--network', plan.network);
  args.push(...runtimeOptions(plan.user));
  // A new volume takes the image's folder, owned by the proxy's user: its socket can be made there.
  args.push(
    ...mountArg({
      type: 'volume',
      source: owner.egressVolume,
      target: EGRESS_DIR,
      readonly: false,
      labels: owner.labels,
      copyFromImage: true,
    }),
  );
  const port = plan.config.port;
  const conf = `${EGRESS_DIR}/squid.conf`;
  // The socket is the proxy's only door to the session; squid listens on loopback behind it.
  const write = secret ? '' : `umask 077; printf '%s' "$1" > ${conf}; `;
  // Either process ending ends the container, so a broken proxy shows as stopped, never as running.
  const script = [
    `set -e; ${write}rm -f ${SOCKET}`,
    `socat UNIX-LISTEN:${SOCKET},fork,max-children=${MAX_CONNECTIONS},mode=600 TCP:127.0.0.1:${port} & s=$!`,
    `squid -N -f ${conf} & q=$!`,
    'while kill -0 "$s" 2>/dev/null && kill -0 "$q" 2>/dev/null; do sleep 1; done',
    'kill "$s" "$q" 2>/dev/null; exit 1',
  ].join('\n');
  args.push('--pull', 'never', plan.image, 'sh', '-c', script, 'para-egress', ...(secret ? [] : [squidConfig(plan.config)]));
  await docker(args, { timeoutMs: config.timeouts.dockerQuickMs });
  if (!secret) return;
  const archive = tarArchive([{ path: 'squid.conf', mode: 0o600, content: squidConfig(plan.config) }], { uid, gid });
  await docker(['cp', '-', `${owner.proxy}:${EGRESS_DIR}/`], { input: archive, timeoutMs: config.timeouts.dockerQuickMs });
  await docker(['start', owner.proxy], { timeoutMs: config.timeouts.dockerQuickMs });
}

/**
 * Creates the forwarder that will live in the session container's network namespace; docker
 * resolves that namespace when it starts, so it can be made before the container exists.
 */
export async function createForwarder(owner: EgressOwner, plan: EgressPlan): Promise<void> {
  const args = ['create', '--name', owner.forwarder, ...labelArgs({ ...owner.labels, [labels.role]: 'egress-forwarder' })];
  args.push('--network', `container:${owner.container}`, ...runtimeOptions(plan.user));
  // Made beside the proxy: whichever of the two creates the volume gives it the session's labels.
  args.push(...mountArg({ type: 'volume', source: owner.egressVolume, target: EGRESS_DIR, readonly: true, labels: owner.labels }));
  args.push(
    '--pull',
    'never',
    plan.image,
    'socat',
    `TCP-LISTEN:${SESSION_PROXY_PORT},bind=127.0.0.1,reuseaddr,fork,max-children=${MAX_CONNECTIONS}`,
    `UNIX-CONNECT:${SOCKET}`,
  );
  await docker(args, { timeoutMs: config.timeouts.dockerQuickMs });
}

/** Starts the forwarder (a new one), or restarts it: after every start of the session container, whose namespace it joins. */
export async function startForwarder(owner: EgressOwner, which: 'new' | 'existing'): Promise<void> {
  const args = which === 'new' ? ['start', owner.forwarder] : ['restart', '--time', '0', owner.forwarder];
  await docker(args, { timeoutMs: config.timeouts.dockerQuickMs });
}

/** Removes the forwarder, the proxy and the proxy's volume of a session; only what carries its labels. */
export async function removeEgress(repo: Repo, paths: SessionPaths): Promise<void> {
  for (const name of [paths.forwarder, paths.proxy]) {
    const info = await inspectContainer(name);
    if (info && labelledFor(info.Config.Labels, repo, paths.name)) await removeContainer(info.Id, { force: true });
  }
  const volume = await inspectVolume(paths.egressVolume);
  if (volume && labelledFor(volume.Labels, repo, paths.name)) await removeVolume(paths.egressVolume);
}

export type ProxyHealth = 'running' | 'stopped' | 'missing' | 'stale';

/**
 * Whether the proxy and the forwarder run, and the forwarder joined the session container's
 * current network namespace (it must be started after the container's latest start).
 */
export function proxyHealth(session: ContainerInfo | undefined, proxy: ContainerInfo | undefined, forwarder: ContainerInfo | undefined): ProxyHealth {
  if (!proxy || !forwarder) return 'missing';
  if (!proxy.State.Running || !forwarder.State.Running) return 'stopped';
  if (session && Date.parse(forwarder.State.StartedAt) < Date.parse(session.State.StartedAt)) return 'stale';
  return 'running';
}

/** The environment that sends the agent's tools through the forwarder (both cases: curl reads only lowercase http_proxy). */
export function sessionProxyEnv(): Record<string, string> {
  const noProxy = 'localhost,127.0.0.1,::1';
  return {
    HTTPS_PROXY: PROXY_URL,
    https_proxy: PROXY_URL,
    HTTP_PROXY: PROXY_URL,
    http_proxy: PROXY_URL,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    // Telemetry, error reports and update checks would only be refused: claude is told not to try.
    CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
  };
}

/** The proxy's port on its own loopback: random with the host's network, where ports are shared. */
export function proxyPort(network: string | null): number {
  return network === 'host' ? 20000 + Math.floor(Math.random() * 40000) : 3128;
}

export function egressDns(): string[] {
  const raw = process.env.PARA_EGRESS_DNS ?? '';
  const servers = raw.split(/[\s,]+/).filter(Boolean);
  for (const server of servers)
    if (!/^[0-9a-f:.]+$/i.test(server))
      throw new UsageError(`PARA_EGRESS_DNS must list IP addresses, got ${JSON.stringify(server)}`, 'set it to addresses such as 10.0.0.2, or unset it');
  return servers;
}

// ---- a session's egress, as start and resume set it up ----------------------------------------

export interface PreparedEgress {
  state: EgressState;
  /** The session container's own network: none unless the egress is open. */
  containerNetwork: string | null;
  env: Record<string, string>;
  mounts: Mount[];
  /** Files to copy into the container once it runs (a remote engine cannot bind-mount them). */
  copies: Array<{ source: string; target: string }>;
  plan: EgressPlan | null;
}

/** Copies host files into a running container (docker cp; its folders are made as needed). */
export async function copyFiles(container: string, copies: Array<{ source: string; target: string }>): Promise<void> {
  for (const copy of copies) {
    const content = await fs.readFile(copy.source);
    const archive = tarArchive([{ path: path.posix.basename(copy.target), mode: 0o644, content }], { uid: 0, gid: 0 });
    await docker(['exec', '--user', '0', container, 'mkdir', '-p', path.posix.dirname(copy.target)], { timeoutMs: config.timeouts.dockerQuickMs });
    await docker(['cp', '-', `${container}:${path.posix.dirname(copy.target)}`], { input: archive, timeoutMs: config.timeouts.dockerQuickMs });
  }
}

/** Where the host's extra CA (NODE_EXTRA_CA_CERTS) is mounted in the session, for claude. */
export const SESSION_CA_FILE = '/etc/para/extra-ca-certificates.pem';

/**
 * The host's NODE_EXTRA_CA_CERTS (a corporate network's intercepting CA), mounted read-only so
 * claude in the session trusts it too. Certificates only: a file holding a private key is refused.
 */
export async function extraCa(
  warn: (message: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ mounts: Mount[]; env: Record<string, string> }> {
  const file = env.NODE_EXTRA_CA_CERTS;
  if (!file) return { mounts: [], env: {} };
  const source = path.resolve(file);
  const stat = await fs.stat(source).catch(() => undefined);
  if (!stat?.isFile() || stat.size > 4 * 1024 * 1024) {
    warn(`NODE_EXTRA_CA_CERTS names ${source}, which is not a readable certificate file: the session does not get it`);
    return { mounts: [], env: {} };
  }
  const text = await fs.readFile(source, 'utf8').catch(() => '');
  if (!text.includes('-----BEGIN CERTIFICATE-----') || /PRIVATE KEY/.test(text)) {
    warn(`NODE_EXTRA_CA_CERTS (${source}) does not hold certificates only: the session does not get it`);
    return { mounts: [], env: {} };
  }
  return { mounts: [{ type: 'bind', source, target: SESSION_CA_FILE, readonly: true }], env: { NODE_EXTRA_CA_CERTS: SESSION_CA_FILE } };
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** Everything a session container needs for its egress mode; the proxy itself is made by createProxy. */
export async function prepareEgress(
  repo: Repo,
  mode: EgressMode,
  allow: string[],
  network: string | null,
  warn: (message: string) => void,
  remote = false,
): Promise<PreparedEgress> {
  const none = { copies: [], plan: null };
  if (mode === 'none') return { state: { mode, allow, hosts: [], upstream: null }, containerNetwork: 'none', env: {}, mounts: [], ...none };
  const ca = await extraCa(warn);
  // A remote engine cannot bind-mount the CA file: it is copied in once the container runs.
  const caFiles = remote ? { mounts: [], copies: ca.mounts.map((m) => ({ source: m.source, target: m.target })) } : { mounts: ca.mounts, copies: [] };
  if (mode === 'open') {
    return { state: { mode, allow, hosts: [], upstream: null }, containerNetwork: network, env: ca.env, ...caFiles, plan: null };
  }
  const hosts = await egressHosts(repo, allow);
  const { plan, upstream } = await proxyPlan(hosts, network, warn, remote);
  return {
    state: { mode, allow, hosts, upstream: upstream ? `${upstream.host}:${upstream.port}` : null },
    containerNetwork: 'none',
    env: { ...sessionProxyEnv(), ...ca.env },
    ...caFiles,
    plan,
  };
}

/** The proxy for a list of hosts on a network: its image, user and configuration (the host's proxy, DNS, blocked addresses). */
export async function proxyPlan(
  hosts: string[],
  network: string | null,
  warn: (message: string) => void,
  remote = false,
): Promise<{ plan: EgressPlan; upstream: Upstream | null }> {
  const image = config.egressImage;
  const [info, hostAddresses] = await Promise.all([inspectImage(image), dockerHostAddresses(network, remote)]);
  if (!info) throw missingEgressImage(image);
  const upstream = hostUpstream();
  if (upstream && isLoopbackHost(upstream.host) && network !== 'host') {
    warn(
      `the host's proxy ${upstream.host}:${upstream.port} listens on the host's loopback, which the session's proxy cannot reach from its network: use --egress-network host`,
    );
  }
  const plan: EgressPlan = {
    image,
    user: egressUser(image, info),
    network,
    config: { hosts, blocked: blockedAddresses(hostAddresses), upstream, port: proxyPort(network), dns: egressDns() },
  };
  return { plan, upstream };
}

/** A session's egress as recorded; a session from before egress modes existed had Docker's own network, or none. */
export function recordedEgress(state: { egress?: EgressState; network: string | null }): EgressState {
  return state.egress ?? { mode: state.network === 'none' ? 'none' : 'open', allow: [], hosts: [], upstream: null };
}

/**
 * A shell snippet for the job runner (root, in the session): when the session has a proxy, wait up
 * to 15 s for it to answer (squid takes a moment to start), so a background job's first request
 * does not fail. It asks for a name no allowlist holds; squid's 403 means it is up.
 */
export const WAIT_FOR_PROXY = `if [ "\${HTTPS_PROXY:-}" = "${PROXY_URL}" ]; then i=0; until bash -c 'exec 3<>/dev/tcp/127.0.0.1/${SESSION_PROXY_PORT} && printf "CONNECT para-probe.invalid:443 HTTP/1.1\\r\\n\\r\\n" >&3 && timeout 2 head -n 1 <&3 | grep -q " 403"' 2>/dev/null; do i=$((i+1)); [ "$i" -ge 150 ] && break; sleep 0.1; done; fi`;

/**
 * Asks the session's proxy, from inside the session as the agent, to tunnel to a name no
 * allowlist holds: a 403 from squid proves the whole path (forwarder, socket, proxy) answers.
 */
export async function probeProxy(container: string): Promise<{ working: boolean; detail: string }> {
  const request = 'CONNECT para-probe.invalid:443 HTTP/1.1\\r\\nHost: para-probe.invalid:443\\r\\n\\r\\n';
  const script = `exec 3<>/dev/tcp/127.0.0.1/${SESSION_PROXY_PORT} || exit 3; printf '${request}' >&3; timeout 5 head -n 1 <&3`;
  const result = await docker(['exec', '--user', config.containerUser, container, 'bash', '-c', script], { allowFailure: true, timeoutMs: 15_000 });
  const line = result.stdout.trim();
  if (/^HTTP\/1\.[01] 403/.test(line)) return { working: true, detail: 'the proxy answers and refuses what is not allowed' };
  if (result.exitCode === 3) return { working: false, detail: `nothing listens on 127.0.0.1:${SESSION_PROXY_PORT} in the session` };
  return { working: false, detail: line ? `the proxy answered "${line}"` : 'the proxy did not answer' };
}
