// The egress proxy's containers. By default (allowlist) the session container has no network at
// all; a proxy sidecar (squid) on the network that reaches the outside admits CONNECTs to port 443
// of allowed host names only, and reaches the session solely through a unix socket in a volume of
// its own, which a forwarder in the session's network namespace serves on 127.0.0.1. The agent
// can neither touch the proxy's configuration nor route around it: it has no interface but lo.
import { config, labels } from '../config.ts';
import type { ContainerInfo, Engine, ImageInfo } from '../engine/engine.ts';
import type { RunSpec } from '../engine/spec.ts';
import { makeCommand } from '../cli.ts';
import { ParaError } from '../errors.ts';
import { tarArchive } from '../tar.ts';
import { dockerHostAddresses } from './addresses.ts';
import { hardened } from './hardened.ts';
import { BROKER_PORT, BROKER_SOCKET_DIR } from '../broker/broker.ts';
import {
  allowedHostsLine,
  blockedAddresses,
  egressDns,
  hostUpstream,
  proxyPort,
  SESSION_PROXY_PORT,
  squidConfig,
  type ProxyConfig,
  type Upstream,
} from './rules.ts';

/** Where the proxy's configuration and socket live, in its own volume. */
export const EGRESS_DIR = '/para-egress';
const SOCKET = `${EGRESS_DIR}/proxy.sock`;

/** Whose proxy: the container it serves, the names of its pieces and the labels they all carry. */
export interface EgressOwner {
  container: string;
  proxy: string;
  forwarder: string;
  egressVolume: string;
  labels: Record<string, string>;
  /** The body of the 403 for a host the allowlist does not hold (squid's %H is the host); absent: squid's own page. */
  refusal?: string;
  /** The credential broker's socket volume and the socket's path in it: the forwarder serves it too, on 127.0.0.1:BROKER_PORT. */
  broker?: { volume: string; socket: string };
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
 * Starts the session's proxy. Its configuration is an argument when it holds nothing secret; with
 * the host proxy's password it goes into the proxy's own volume by a copy before the start, never
 * into an argument or the environment.
 */
export async function createProxy(engine: Engine, owner: EgressOwner, plan: EgressPlan): Promise<void> {
  const [uid, gid] = plan.user.split(':').map(Number);
  const secret = Boolean(plan.config.upstream?.login);
  const port = plan.config.port;
  const conf = `${EGRESS_DIR}/squid.conf`;
  // The socket is the proxy's only door to the session; squid listens on loopback behind it.
  // The configuration it was made with, unless `para allow` widened that very configuration since
  // (squid.conf.live, kept beside the hash of the one it widened): a restart keeps the widening.
  const write = secret
    ? ''
    : [
        'umask 077',
        `printf '%s' "$1" | sha256sum > ${conf}.base`,
        `if [ -s ${conf}.live ] && cmp -s ${conf}.base ${conf}.live.base; then cp ${conf}.live ${conf}; else printf '%s' "$1" > ${conf}; rm -f ${conf}.live ${conf}.live.base; fi; `,
      ].join('; ');
  // The refusal page, among squid's own templates (error_directory replaces them all).
  const page = owner.refusal
    ? `mkdir -p ${ERRORS_DIR}; cp /usr/share/squid/errors/templates/* ${ERRORS_DIR}/ 2>/dev/null || true; printf '%s' "$2" > ${ERRORS_DIR}/${REFUSAL_PAGE}; `
    : '';
  // Either process ending ends the container, so a broken proxy shows as stopped, never as running.
  const script = [
    `set -e; ${write}${page}rm -f ${SOCKET}`,
    `socat UNIX-LISTEN:${SOCKET},fork,max-children=${MAX_CONNECTIONS},mode=600 TCP:127.0.0.1:${port} & s=$!`,
    `squid -N -f ${conf} & q=$!`,
    'while kill -0 "$s" 2>/dev/null && kill -0 "$q" 2>/dev/null; do sleep 1; done',
    'kill "$s" "$q" 2>/dev/null; exit 1',
  ].join('\n');
  const spec: RunSpec = {
    image: plan.image,
    name: owner.proxy,
    labels: { ...owner.labels, [labels.role]: 'egress-proxy' },
    network: plan.network,
    ...hardened(plan.user),
    // A new volume takes the image's folder, owned by the proxy's user: its socket can be made there.
    mounts: [{ type: 'volume', source: owner.egressVolume, target: EGRESS_DIR, readonly: false, labels: owner.labels, copyFromImage: true }],
    command: ['sh', '-c', script, 'para-egress', secret ? '' : squidConfig(withRefusal(plan.config, owner)), owner.refusal ?? ''],
  };
  if (!secret) {
    await engine.run(spec, { detach: true });
    return;
  }
  await engine.create(spec);
  await engine.copyIn(
    owner.proxy,
    `${EGRESS_DIR}/`,
    tarArchive([{ path: 'squid.conf', mode: 0o600, content: squidConfig(withRefusal(plan.config, owner)) }], { uid, gid }),
  );
  await engine.startContainer(owner.proxy);
}

const ERRORS_DIR = `${EGRESS_DIR}/errors`;
const REFUSAL_PAGE = 'ERR_PARA_NOT_ALLOWED';

function withRefusal(cfg: ProxyConfig, owner: EgressOwner): ProxyConfig {
  return owner.refusal ? { ...cfg, refusal: { directory: ERRORS_DIR, page: REFUSAL_PAGE } } : cfg;
}

/**
 * Admits more hosts in a running proxy: its configuration is rewritten with the new allowlist line
 * (only that line: the rest, a corporate proxy's password included, stays as it is), kept for a
 * restart, and squid reloads it (SIGHUP); the session, its job and open tunnels keep running.
 * Resolves once squid accepts connections again; returns how long that took.
 */
export async function widenProxy(engine: Engine, proxy: string, hosts: string[]): Promise<number> {
  const conf = `${EGRESS_DIR}/squid.conf`;
  const read = await engine.exec(proxy, ['cat', conf], { user: 'proxy', allowFailure: true });
  if (read.exitCode !== 0 || !/^acl para_allowed /m.test(read.stdout)) {
    throw new ParaError(`the proxy ${proxy} has no configuration para can widen: ${read.stderr.trim() || 'no allowlist line'}`, {
      code: 'proxy-unreadable',
      hint: 'restart the session (para start NAME --container) and try again',
    });
  }
  const next = `${read.stdout.replace(/^acl para_allowed .*$/m, allowedHostsLine(hosts))}\n`;
  const started = Date.now();
  const since = Math.floor(started / 1000) - 1;
  const reload = [
    'set -e; umask 077',
    `cat > ${conf}.next`,
    `cp ${conf}.next ${conf}.live; [ ! -e ${conf}.base ] || cp ${conf}.base ${conf}.live.base`,
    `mv -f ${conf}.next ${conf}`,
    // squid -N is one process; it re-reads its configuration on SIGHUP.
    'n=0; for p in /proc/[0-9]*; do if [ "$(cat "$p/comm" 2>/dev/null)" = squid ]; then kill -HUP "${p#/proc/}"; n=$((n+1)); fi; done; [ "$n" -gt 0 ]',
  ].join('\n');
  const written = await engine.exec(proxy, ['sh', '-c', reload], { user: 'proxy', input: next, allowFailure: true });
  if (written.exitCode !== 0)
    throw new ParaError(`the proxy ${proxy} could not reload: ${written.stderr.trim() || `exit code ${written.exitCode}`}`, { code: 'proxy-reload' });
  // squid says so on its cache log once the new configuration serves.
  for (let i = 0; i < 200; i += 1) {
    const logs = await engine.docker(['logs', '--since', String(since), proxy], { allowFailure: true });
    if (/Accepting HTTP Socket connections/.test(logs.stderr) && /Reconfiguring Squid Cache/.test(logs.stderr)) return Date.now() - started;
    if (/FATAL|ERROR: .*squid\.conf/.test(logs.stderr))
      throw new ParaError(`squid refused the new configuration: ${logs.stderr.trim().split('\n').pop()}`, { code: 'proxy-reload' });
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new ParaError(`the proxy ${proxy} did not come back within 10 s of its reload`, { code: 'proxy-reload' });
}

/**
 * Creates the forwarder that will live in the session container's network namespace; docker
 * resolves that namespace when it starts, so it can be made before the container exists.
 */
const RELAY_DIR = '/run/para-relay';
/** Connections to the broker relayed at once: each is a shell and a socat, under the forwarder's process limit. */
const BROKER_CONNECTIONS = 48;

/**
 * One connection from claude to the broker. When the broker does not answer (stopped, gone),
 * claude gets an API error that says so and names the doctor, instead of a bare connection reset.
 */
function brokerRelay(socket: string): string {
  const body = JSON.stringify({
    type: 'error',
    error: {
      type: 'permission_error',
      message:
        'para: the credential broker is not running, so claude cannot reach the API. On the host, run: para doctor (the next para start brings the broker back).',
    },
  });
  return [
    `socat - UNIX-CONNECT:${socket} 2>/dev/null && exit 0`,
    `body='${body}'`,
    `printf 'HTTP/1.1 403 Forbidden\\r\\nContent-Type: application/json\\r\\nContent-Length: %s\\r\\nConnection: close\\r\\n\\r\\n%s' "\${#body}" "$body"`,
  ].join('\n');
}

export async function createForwarder(engine: Engine, owner: EgressOwner, plan: EgressPlan): Promise<void> {
  const [uid, gid] = plan.user.split(':').map(Number);
  const proxy = ['socat', `TCP-LISTEN:${SESSION_PROXY_PORT},bind=127.0.0.1,reuseaddr,fork,max-children=${MAX_CONNECTIONS}`, `UNIX-CONNECT:${SOCKET}`];
  const broker = owner.broker;
  await engine.create({
    image: plan.image,
    name: owner.forwarder,
    labels: { ...owner.labels, [labels.role]: 'egress-forwarder' },
    network: `container:${owner.container}`,
    ...hardened(plan.user),
    // Made beside the proxy: whichever of the two creates the volume gives it the session's labels.
    mounts: [
      { type: 'volume', source: owner.egressVolume, target: EGRESS_DIR, readonly: true, labels: owner.labels },
      // The broker's volume exists (ensureBroker made it): never created here, where it would get the session's labels.
      ...(broker ? [{ type: 'volume' as const, source: broker.volume, target: BROKER_SOCKET_DIR, readonly: true }] : []),
    ],
    // The relay script lives in memory (the root is read-only).
    ...(broker ? { tmpfs: [{ target: RELAY_DIR, uid, gid, mode: '0700', size: '64k' }] } : {}),
    // With the broker, either socat ending ends the forwarder (a broken way shows as stopped).
    command: broker
      ? [
          'sh',
          '-c',
          [
            `printf '%s\\n' "$1" > ${RELAY_DIR}/relay`,
            `${proxy.join(' ')} & a=$!`,
            `socat TCP-LISTEN:${BROKER_PORT},bind=127.0.0.1,reuseaddr,fork,max-children=${BROKER_CONNECTIONS} EXEC:'sh ${RELAY_DIR}/relay' & b=$!`,
            // A port the agent holds makes socat exit at once: the forwarder stops within 0.2 s (start then restarts the session).
            'sleep 0.2; while kill -0 "$a" 2>/dev/null && kill -0 "$b" 2>/dev/null; do sleep 1; done',
            'kill "$a" "$b" 2>/dev/null; exit 1',
          ].join('\n'),
          'para-forward',
          brokerRelay(broker.socket),
        ]
      : proxy,
  });
}

/** Starts the forwarder (a new one), or restarts it: after every start of the session container, whose namespace it joins. */
export async function startForwarder(engine: Engine, owner: EgressOwner, which: 'new' | 'existing'): Promise<void> {
  if (which === 'new') await engine.startContainer(owner.forwarder);
  else await engine.restartContainer(owner.forwarder);
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
function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** The proxy for a list of hosts on a network: its image, user and configuration (the host's proxy, DNS, blocked addresses). */
export async function proxyPlan(
  engine: Engine,
  hosts: string[],
  network: string | null,
  warn: (message: string) => void,
  brokered = false,
): Promise<{ plan: EgressPlan; upstream: Upstream | null }> {
  const image = config.egressImage;
  const [info, hostAddresses] = await Promise.all([engine.inspectImage(image), dockerHostAddresses(engine, network)]);
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
    config: { hosts, blocked: blockedAddresses(hostAddresses), upstream, port: proxyPort(network), dns: egressDns(), ...(brokered ? { brokered } : {}) },
  };
  return { plan, upstream };
}

/**
 * Asks the session's proxy, from inside the session as the agent, to tunnel to a name no
 * allowlist holds: a 403 from squid proves the whole path (forwarder, socket, proxy) answers.
 */
export async function probeProxy(engine: Engine, container: string): Promise<{ working: boolean; detail: string }> {
  const request = 'CONNECT para-probe.invalid:443 HTTP/1.1\\r\\nHost: para-probe.invalid:443\\r\\n\\r\\n';
  const script = `exec 3<>/dev/tcp/127.0.0.1/${SESSION_PROXY_PORT} || exit 3; printf '${request}' >&3; timeout 5 head -n 1 <&3`;
  const result = await engine.exec(container, ['bash', '-c', script], { user: config.containerUser, allowFailure: true, timeoutMs: 15_000 });
  const line = result.stdout.trim();
  if (/^HTTP\/1\.[01] 403/.test(line)) return { working: true, detail: 'the proxy answers and refuses what is not allowed' };
  if (result.exitCode === 3) return { working: false, detail: `nothing listens on 127.0.0.1:${SESSION_PROXY_PORT} in the session` };
  return { working: false, detail: line ? `the proxy answered "${line}"` : 'the proxy did not answer' };
}
