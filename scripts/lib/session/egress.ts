// A session's egress as start, resume and finish see it: the repository's allowlist file, what the
// session container needs for its mode (network, proxy variables, the host's CA), and the removal
// of its proxy. The rules live in egress/rules.ts, the proxy's containers in egress/proxy.ts.
import path from 'node:path';
import fs from 'fs-extra';
import type { Engine } from '../engine/engine.ts';
import type { Mount } from '../engine/spec.ts';
import { ParaError } from '../errors.ts';
import { extraCa } from '../egress/ca.ts';
import { labelledFor, sessionLabels, type Repo } from '../repo.ts';
import { tarArchive } from '../tar.ts';
import { proxyPlan, type EgressOwner, type EgressPlan } from '../egress/proxy.ts';
import {
  DEFAULT_ALLOWED_HOSTS,
  hostUpstream,
  hostPatternProblem,
  normalizeHost,
  REPO_ALLOW_FILE,
  sessionProxyEnv,
  type EgressMode,
  type EgressState,
} from '../egress/rules.ts';
import type { SessionPaths } from './paths.ts';

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

export async function egressHosts(repo: Repo, allow: string[]): Promise<string[]> {
  const own = await readRepoAllowlist(repo);
  return [...new Set([...DEFAULT_ALLOWED_HOSTS, ...own.hosts, ...allow])];
}

export function sessionEgressOwner(
  repo: Repo,
  paths: SessionPaths,
  invocation?: (verb: string) => string,
  broker?: { volume: string; socket: string },
): EgressOwner {
  return {
    container: paths.container,
    proxy: paths.proxy,
    forwarder: paths.forwarder,
    egressVolume: paths.egressVolume,
    labels: sessionLabels(paths.name, repo),
    ...(invocation ? { refusal: refusalText(paths.name, invocation) } : {}),
    ...(broker ? { broker } : {}),
  };
}

/** What the agent reads when the proxy refuses a host (squid puts the host for %H): ask, never work around. */
export function refusalText(name: string, invocation: (verb: string) => string): string {
  return [
    "para refused this connection: the host %H is not on this session's egress allowlist.",
    'Do not try to reach it another way (another proxy, an address, a mirror, a different tool).',
    'If the task needs it, stop and ask the user to allow it; they can, while you keep working, with:',
    `    ${invocation('allow')} ${name} %H`,
    '',
  ].join('\n');
}

/** Removes the forwarder, the proxy and the proxy's volume of a session; only what carries its labels. */
export async function removeEgress(engine: Engine, repo: Repo, paths: SessionPaths): Promise<void> {
  for (const name of [paths.forwarder, paths.proxy]) {
    const info = await engine.inspectContainer(name);
    if (info && labelledFor(info.Config.Labels, repo, paths.name)) await engine.removeContainer(info.Id, { force: true });
  }
  const volume = await engine.inspectVolume(paths.egressVolume);
  if (volume && labelledFor(volume.Labels, repo, paths.name)) await engine.removeVolume(paths.egressVolume);
}

export interface PreparedEgress {
  state: EgressState;
  /** The session container's own network: none unless the egress is open. */
  containerNetwork: string | null;
  env: Record<string, string>;
  mounts: Mount[];
  /** Files to copy into the container once it runs (a remote engine cannot bind-mount them). */
  copies: Array<{ source: string; target: string }>;
  /** The proxy's plan (its image checked, the Docker host's addresses looked up): settled while the session container starts. */
  plan: Promise<EgressPlan> | null;
}

/** Copies host files into a running container (its folders are made as needed). */
export async function copyFiles(engine: Engine, container: string, copies: Array<{ source: string; target: string }>): Promise<void> {
  for (const copy of copies) {
    const content = await fs.readFile(copy.source);
    const archive = tarArchive([{ path: path.posix.basename(copy.target), mode: 0o644, content }], { uid: 0, gid: 0 });
    await engine.exec(container, ['mkdir', '-p', path.posix.dirname(copy.target)], { user: '0' });
    await engine.copyIn(container, path.posix.dirname(copy.target), archive);
  }
}

/** Everything a session container needs for its egress mode; the proxy itself is made by createProxy. */
export async function prepareEgress(
  engine: Engine,
  repo: Repo,
  mode: EgressMode,
  allow: string[],
  network: string | null,
  warn: (message: string) => void,
  brokered = false,
): Promise<PreparedEgress> {
  const none = { copies: [], plan: null };
  if (mode === 'none') return { state: { mode, allow, hosts: [], upstream: null }, containerNetwork: 'none', env: {}, mounts: [], ...none };
  const ca = await extraCa(warn);
  // A remote engine cannot bind-mount the CA file: it is copied in once the container runs.
  const caFiles = engine.remote ? { mounts: [], copies: ca.mounts.map((m) => ({ source: m.source, target: m.target })) } : { mounts: ca.mounts, copies: [] };
  if (mode === 'open') {
    return { state: { mode, allow, hosts: [], upstream: null }, containerNetwork: network, env: ca.env, ...caFiles, plan: null };
  }
  const hosts = await egressHosts(repo, allow);
  const upstream = hostUpstream();
  const plan = proxyPlan(engine, hosts, network, warn, brokered).then((planned) => planned.plan);
  // Whoever needs the plan awaits it; a start that fails before then must not leave it unhandled.
  plan.catch(() => undefined);
  return {
    state: { mode, allow, hosts, upstream: upstream ? `${upstream.host}:${upstream.port}` : null },
    containerNetwork: 'none',
    env: { ...sessionProxyEnv(), ...ca.env },
    ...caFiles,
    plan,
  };
}
