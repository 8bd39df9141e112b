// The egress rules, as data and text only (no engine, no files): which hosts a session may reach,
// how allowlist patterns are checked and matched, the host's own proxy read from the environment,
// the addresses the proxy never connects to, and the squid configuration that enforces all this.
// Everything here is unit-tested without Docker (test/allowlist.test.ts).
import path from 'node:path';
import { UsageError } from '../errors.ts';

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
  /** para's own page for a refused host: squid's error_directory (templates copied in) and the page's name. */
  refusal?: { directory: string; page: string };
  /** The session's claude reaches the API through the credential broker: a tunnel to the API's host is refused, whatever the allowlist says. */
  brokered?: boolean;
}

/** squid.conf's allowlist line for these hosts (para allow rewrites just this line in a running proxy). */
export function allowedHostsLine(hosts: string[]): string {
  return `acl para_allowed dstdom_regex -n -i ${hosts.map(hostRegex).join(' ')}`;
}

/** What every squid para writes keeps off: no pid file, cache, pinger, core dumps or log rotation; no Via or X-Forwarded-For; no version string. */
export const SQUID_QUIET = [
  'pid_filename none',
  'pinger_enable off',
  'cache deny all',
  'cache_mem 0 MB',
  'memory_pools off',
  'client_db off',
  'logfile_rotate 0',
  'coredump_dir none',
  'shutdown_lifetime 1 seconds',
  'via off',
  'forwarded_for delete',
  'httpd_suppress_version_string on',
];

/** squid.conf: CONNECT to 443 of an allowed name that does not resolve to a blocked address; nothing else. */
export function squidConfig(cfg: ProxyConfig): string {
  const lines = [
    '# Written by para for one session; every request not admitted below is refused.',
    `http_port 127.0.0.1:${cfg.port}`,
    ...SQUID_QUIET,
    'ipcache_size 256',
    'fqdncache_size 64',
    // One line per request: time, method, target, status, squid's verdict and para's reason.
    'logformat para %tl %rm %ru %>Hs %Ss %{reason}note',
    'access_log stdio:/dev/stdout para',
    'cache_log stdio:/dev/stderr',
    ...(cfg.dns.length ? [`dns_nameservers ${cfg.dns.join(' ')}`] : []),
    'acl para_connect method CONNECT',
    'acl para_tls port 443',
    // -n: never look a name (or an address) up to decide whether it is on the list.
    allowedHostsLine(cfg.hosts),
    `acl para_blocked dst ${cfg.blocked.join(' ')}`,
    'acl para_why_method annotate_transaction reason=refused:only-CONNECT-is-allowed',
    'acl para_why_port annotate_transaction reason=refused:only-port-443',
    'acl para_why_host annotate_transaction reason=refused:host-not-in-allowlist',
    'acl para_why_address annotate_transaction reason=refused:resolves-to-a-docker-host-or-link-local-address',
    'acl para_why_ok annotate_transaction reason=allowed',
    ...(cfg.brokered
      ? [
          'acl para_brokered dstdomain -n api.anthropic.com',
          'acl para_why_brokered annotate_transaction reason=refused:the-api-is-reached-through-the-credential-broker',
          // The session's placeholder login never expires: only the broker's login (or the host's) is ever refreshed.
          'acl para_token_host dstdomain -n platform.claude.com',
          'acl para_why_token annotate_transaction reason=refused:the-login-is-refreshed-outside-the-session',
        ]
      : []),
    // Order matters: names are judged before any lookup; only an allowed name is resolved.
    ...(cfg.refusal ? [`error_directory ${cfg.refusal.directory}`, `deny_info ${cfg.refusal.page} para_why_host`] : []),
    'http_access deny !para_connect para_why_method',
    'http_access deny !para_tls para_why_port',
    ...(cfg.brokered ? ['http_access deny para_brokered para_why_brokered', 'http_access deny para_token_host para_why_token'] : []),
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
