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
import { blockedAddresses, egressDns, hostUpstream, proxyPort, SESSION_PROXY_PORT, squidConfig, type ProxyConfig, type Upstream } from './rules.ts';

/** Where the proxy's configuration and socket live, in its own volume. */
const EGRESS_DIR = '/para-egress';
const SOCKET = `${EGRESS_DIR}/proxy.sock`;

/** Whose proxy: the container it serves, the names of its pieces and the labels they all carry. */
export interface EgressOwner {
  container: string;
  proxy: string;
  forwarder: string;
  egressVolume: string;
  labels: Record<string, string>;
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

/** What the proxy and the forwarder share: read-only, unprivileged, small, capped logs. */
function hardened(user: string): Pick<RunSpec, 'readOnly' | 'user' | 'capabilities' | 'noNewPrivileges' | 'init' | 'memory' | 'pidsLimit' | 'logs'> {
  return {
    readOnly: true,
    user,
    capabilities: { drop: 'ALL', add: [] },
    noNewPrivileges: true,
    init: true,
    memory: '256m',
    pidsLimit: 256,
    // The agent can make the proxy log as fast as it sends requests: the log is capped.
    logs: { maxSize: '10m', maxFiles: 2 },
  };
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
  const write = secret ? '' : `umask 077; printf '%s' "$1" > ${conf}; `;
  // Either process ending ends the container, so a broken proxy shows as stopped, never as running.
  const script = [
    `set -e; ${write}rm -f ${SOCKET}`,
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
    command: ['sh', '-c', script, 'para-egress', ...(secret ? [] : [squidConfig(plan.config)])],
  };
  if (!secret) {
    await engine.run(spec, { detach: true });
    return;
  }
  await engine.create(spec);
  await engine.copyIn(owner.proxy, `${EGRESS_DIR}/`, tarArchive([{ path: 'squid.conf', mode: 0o600, content: squidConfig(plan.config) }], { uid, gid }));
  await engine.startContainer(owner.proxy);
}

/**
 * Creates the forwarder that will live in the session container's network namespace; docker
 * resolves that namespace when it starts, so it can be made before the container exists.
 */
export async function createForwarder(engine: Engine, owner: EgressOwner, plan: EgressPlan): Promise<void> {
  await engine.create({
    image: plan.image,
    name: owner.forwarder,
    labels: { ...owner.labels, [labels.role]: 'egress-forwarder' },
    network: `container:${owner.container}`,
    ...hardened(plan.user),
    // Made beside the proxy: whichever of the two creates the volume gives it the session's labels.
    mounts: [{ type: 'volume', source: owner.egressVolume, target: EGRESS_DIR, readonly: true, labels: owner.labels }],
    command: ['socat', `TCP-LISTEN:${SESSION_PROXY_PORT},bind=127.0.0.1,reuseaddr,fork,max-children=${MAX_CONNECTIONS}`, `UNIX-CONNECT:${SOCKET}`],
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
    config: { hosts, blocked: blockedAddresses(hostAddresses), upstream, port: proxyPort(network), dns: egressDns() },
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
