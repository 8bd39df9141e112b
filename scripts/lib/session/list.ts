// What is there: every session of the repository with its live state, grouped by the engine it
// lives on, and the containers and volumes labelled for the repository that belong to none.
import { brokerNames, brokerStatus, followHostLogin, followsHost, type HostLogin } from '../broker/broker.ts';
import { renewBrokerLogins, renewedByPara } from '../broker/refresh.ts';
import { makeCommand } from '../cli.ts';
import { config, labels } from '../config.ts';
import { DockerError } from '../engine/docker.ts';
import { engineFor, type ContainerInfo, type Engine, type VolumeInfo } from '../engine/engine.ts';
import { errorMessage } from '../errors.ts';
import { git } from '../git.ts';
import { exec } from './container.ts';
import { ownedBy, repoLabels } from '../repo.ts';
import { settleFromStatus, settleJob, type JobProgress } from './job.ts';
import { sessionPaths } from './paths.ts';
import type { Repo } from '../repo.ts';
import { branchTip } from './resources.ts';
import { currentDockerContext, describeEngine, resolveEngine, targetKey, type EngineTarget } from '../engine/target.ts';
import { proxyHealth, type ProxyHealth } from '../egress/proxy.ts';
import { recordedEgress, type EgressState } from '../egress/rules.ts';
import { mirrorVolume } from './transport.ts';
import { engineOf, listSessions, writeSession, type SessionState, type StateProblem } from './store.ts';
import { refusalsSince } from './steer.ts';
import { branchWarnings, plantedGit, syncSession } from './sync.ts';
import { activity, lastStatus, type ActivityView } from './agent-state.ts';

export type ContainerState = 'running' | 'exited' | 'created' | 'paused' | 'missing' | 'none' | 'unreachable';

export interface SessionView {
  name: string;
  status: SessionState['status'];
  branch: string;
  /** The branch's commit on the host after this look (the agent's commits are brought back first). */
  head: string | null;
  worktree: string;
  container: string | null;
  containerState: ContainerState;
  image: string | null;
  network: string | null;
  /** How the agent reaches the outside, and (allowlist) whether its proxy works. */
  egress: (EgressState & { proxy: ProxyHealth | null; refusedSinceLastLook?: number | null }) | null;
  /** The engine it lives on; null: the default engine. */
  engine: EngineTarget | null;
  /** The OCI runtime of its container (runsc: gVisor); null: the engine's default. */
  runtime: string | null;
  limits: SessionState['limits'];
  /** null when unknown (worktree gone, or the container cannot say). */
  uncommittedChanges: boolean | null;
  createdAt: string;
  ageSeconds: number;
  prompt: string | null;
  job: (SessionState['job'] & { state: JobProgress['state']; reason?: string }) | null;
  /** What the agent is doing (its hooks' word, or its job's exit); null for a finished session. */
  activity: ActivityView | null;
  /** Set when the session's container is gone: an orphaned session. */
  orphan: 'no-container' | null;
  /** The worktree folder holds a .git that para did not make. */
  plantedGit: boolean;
  warnings: string[];
}

export interface OrphanContainer {
  id: string;
  name: string;
  session: string | null;
  state: string;
  /** The engine it is on (a docker context or DOCKER_HOST); null: the default engine. */
  engine: string | null;
}

export interface Overview {
  repo: string;
  sessions: SessionView[];
  orphanContainers: OrphanContainer[];
  orphanVolumes: string[];
  problems: StateProblem[];
  /** The credential brokers the running sessions use. */
  brokers: BrokerView[];
}

/** A credential broker, as list shows it (never any of its login but when it expires). */
export interface BrokerView {
  name: string;
  /** The engine it is on (a docker context or DOCKER_HOST); null: the default engine. */
  engine: string | null;
  /** The login image it takes its login from, and the egress network it serves (null: Docker's own). */
  image: string;
  network: string | null;
  state: 'running' | 'stopped' | 'missing' | 'foreign';
  /** When the login it serves expires (null: unknown, or a login that does not). */
  loginExpiresAt: string | null;
  /** It serves the host's newer login of the same account (follow the host), not the image's. */
  followsHost: boolean;
  /** It took the host's newer login during this look. */
  tookHostLogin: boolean;
  /** Its login is one make login made, which para renews before it expires. */
  renewedByPara: boolean;
  /** para renewed its login during this look. */
  renewedLogin: boolean;
  /** Why its login, due for renewal, was not renewed during this look (null: nothing wrong). */
  renewalProblem: string | null;
  /** The running sessions that use it. */
  sessions: string[];
}

export function containerDisplayName(container: ContainerInfo): string {
  return container.Name.replace(/^\//, '') || container.Id.slice(0, 12);
}

export interface Reconciled {
  /** Containers labelled for the repository that no live session claims: what clean removes. */
  unclaimed: ContainerInfo[];
  /** Volumes labelled for the repository that no live session claims: what clean removes. */
  unclaimedVolumes: VolumeInfo[];
  /** Active sessions whose container no longer exists: resume (start) or cancel them. */
  missing: SessionState[];
}

/**
 * The one rule for orphans, used by list, clean and the doctor: a resource is claimed by a
 * session that is not finished and whose name it carries (a starting session may not have made
 * it yet, so it claims by name too).
 */
/** buildContainerName's shape (image/build.ts). */
const BUILD_CONTAINER = /^para-build-[0-9a-f]{8}-\d+-[0-9a-f]+$/;

export function reconcile(repo: Repo, states: SessionState[], containers: ContainerInfo[], volumes: VolumeInfo[] = []): Reconciled {
  const live = new Set(states.filter((s) => s.status !== 'finished').map((s) => s.name));
  const claims = (session: string | undefined, name: string, kind: 'container' | 'volume') => {
    if (!session || !live.has(session)) return false;
    const paths = sessionPaths(repo, session);
    return (kind === 'container' ? [paths.container, paths.proxy, paths.forwarder] : [paths.volume, paths.egressVolume]).includes(name);
  };
  const present = new Set(containers.map(containerDisplayName));
  return {
    // An image build's container (it carries the tools image's labels) is its build's to remove, or the sweep's.
    unclaimed: containers.filter(
      (c) => !claims(c.Config.Labels?.[labels.session], containerDisplayName(c), 'container') && !BUILD_CONTAINER.test(containerDisplayName(c)),
    ),
    // A remote engine's mirror of the history is claimed while any session there lives.
    unclaimedVolumes: volumes.filter(
      (v) =>
        !claims(v.Labels?.[labels.session] ?? undefined, v.Name, 'volume') &&
        !(v.Labels?.[labels.role] === 'mirror' && v.Name === mirrorVolume(repo) && live.size > 0),
    ),
    missing: states.filter((s) => s.status === 'active' && s.container !== null && !present.has(s.container)),
  };
}

export async function changesInside(engine: Engine, state: SessionState, repo: Repo, containerState: ContainerState): Promise<boolean | null> {
  const paths = sessionPaths(repo, state.name);
  if (containerState === 'running') {
    // The agent's git answers (its word only: this is display, nothing is decided on it).
    const result = await exec(engine, paths.container, ['git', '--no-optional-locks', 'status', '--porcelain'], {
      allowFailure: true,
    });
    return result.exitCode === 0 ? result.stdout.trim().length > 0 : null;
  }
  if (!state.container)
    return (await git(['--no-optional-locks', 'status', '--porcelain'], { cwd: paths.worktree, allowFailure: true })).stdout.trim().length > 0;
  // Only the agent's git knows, and it is not running: list never reads the folder itself.
  return null;
}

/** watch looks every few seconds: the host's login is followed at most every 15 s per engine. */
const FOLLOW_EVERY_MS = 15_000;
type Renewals = Awaited<ReturnType<typeof renewBrokerLogins>>;
interface Tended {
  moved: string[];
  host: HostLogin | undefined;
  /** Per login image para renews: renewed now, or what went wrong. */
  renewals: Map<string, { renewed: boolean; problem: string | null }>;
}
const followed = new Map<string, { at: number; result: Promise<Tended> }>();
/** The brokers' logins kept current: the host's renewed login followed, a make login one renewed when due. */
function followedLogin(engine: Engine & { target: EngineTarget }): Promise<Tended> {
  const key = targetKey(engine.target);
  const last = followed.get(key);
  if (last && Date.now() - last.at < FOLLOW_EVERY_MS)
    return last.result.then((r) => ({ ...r, moved: [], renewals: new Map([...r.renewals].map(([k, v]) => [k, { ...v, renewed: false }])) }));
  const result = (async (): Promise<Tended> => {
    const { moved, host } = await followHostLogin(engine).catch(() => ({ moved: [] as string[], host: undefined }));
    const renewals = new Map<string, { renewed: boolean; problem: string | null }>();
    for (const r of await renewBrokerLogins(engine).catch((error: unknown): Renewals => [{ image: '', brokers: [], skipped: errorText(error) }]))
      renewals.set(r.image, { renewed: r.renewed !== undefined, problem: r.skipped ?? null });
    return { moved, host, renewals };
  })();
  followed.set(key, { at: Date.now(), result });
  return result;
}

/** The login image a brokered session's broker serves. */
export function brokerImageOf(state: SessionState): string {
  return state.brokerImage ?? state.image ?? config.authenticatedImage;
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The brokers an engine's running brokered sessions use, one inspect each per look (however many
 * sessions share one). First each broker whose login the host renewed takes it (follow the host).
 */
async function brokerViews(engine: Engine & { target: EngineTarget }, states: SessionState[], byName: Map<string, ContainerInfo>): Promise<BrokerView[]> {
  const users = new Map<string, { network: string | null; image: string; sessions: string[] }>();
  for (const state of states) {
    const container = state.container ? byName.get(state.container) : undefined;
    if (state.status !== 'active' || state.credentials !== 'broker' || !container?.State.Running) continue;
    const image = brokerImageOf(state);
    const name = brokerNames(state.network, image).container;
    const entry = users.get(name) ?? { network: state.network, image, sessions: [] };
    entry.sessions.push(state.name);
    users.set(name, entry);
  }
  if (users.size === 0) return [];
  const { moved, host, renewals } = await followedLogin(engine);
  return Promise.all(
    [...users].map(async ([name, { network, image, sessions }]) => {
      const [info, imageInfo] = await Promise.all([engine.inspectContainer(name).catch(() => undefined), engine.inspectImage(image).catch(() => undefined)]);
      const state = brokerStatus(info);
      const following = imageInfo ? followsHost(imageInfo, host) : undefined;
      const baked = Date.parse(imageInfo?.Config.Labels?.[labels.credentialsExpiresAt] ?? '');
      const expires = following?.expiresAt ?? (Number.isFinite(baked) ? baked : undefined);
      return {
        name,
        engine: engine.target.context ?? engine.target.host,
        image,
        network,
        state,
        loginExpiresAt: expires === undefined ? null : new Date(expires).toISOString(),
        followsHost: Boolean(following),
        tookHostLogin: moved.includes(name),
        renewedByPara: renewedByPara(imageInfo),
        renewedLogin: renewals.get(image)?.renewed ?? false,
        renewalProblem: renewals.get(image)?.problem ?? renewals.get('')?.problem ?? null,
        sessions,
      } satisfies BrokerView;
    }),
  );
}

/** What a session's broker means for it: down, or serving a login that has expired. */
function brokerWarnings(broker: BrokerView | undefined, now: number): string[] {
  if (!broker) return [];
  if (broker.state !== 'running')
    return [
      `its credential broker ${broker.name} is ${broker.state === 'foreign' ? "not para's" : broker.state}: claude in the session cannot reach the API; the next start (of any session) brings it back`,
    ];
  const expired = broker.loginExpiresAt !== null && Date.parse(broker.loginExpiresAt) <= now;
  // Not yet expired, a failed renewal is the broker's news (list says it once), not each session's.
  if (broker.renewedByPara && expired)
    return [
      `the login its credential broker ${broker.name} serves expired at ${broker.loginExpiresAt}, and para could not renew it: ${broker.renewalProblem ?? 'see para doctor'}`,
    ];
  if (expired)
    return [
      `the login its credential broker ${broker.name} serves expired at ${broker.loginExpiresAt}: run claude on the host once (it renews its own login; the next para list, watch or start brings the new one to the broker), or ${makeCommand('image')} again`,
    ];
  return [];
}

async function view(
  engine: Engine,
  repo: Repo,
  raw: SessionState,
  byName: Map<string, ContainerInfo>,
  missing: Set<string>,
  now: number,
  tips: Map<string, string>,
  brokers: Map<string, BrokerView>,
): Promise<SessionView> {
  let state = raw;
  const warnings: string[] = [];
  const info = state.container ? byName.get(state.container) : undefined;
  const containerState: ContainerState =
    state.status === 'finished' || !state.container
      ? 'none'
      : !info
        ? 'missing'
        : info.State.Paused
          ? 'paused'
          : info.State.Running
            ? 'running'
            : info.State.Status === 'created'
              ? 'created'
              : 'exited';
  // The container's last status line answers most questions without running anything in it.
  const running = containerState === 'running';
  const status = running && state.status === 'active' ? await engine.logs(state.container!, { tail: 20 }).then(lastStatus, () => null) : null;
  const paths = sessionPaths(repo, state.name);
  let planted = false;
  let head = tips.get(paths.ref) ?? null;
  // The agent's own report, when it reads as para writes it.
  const report = status && !status.agent.garbled && status.agent.refs !== null ? status.agent : null;
  if (state.status === 'active' && state.container) {
    // The agent's branch is where the host's is: nothing to bring back (para's own word on the job, the agent's on its branch).
    const inStep = report !== null && report.head === head;
    try {
      if (inStep) {
        planted = await plantedGit(state.worktree);
        warnings.push(...(await branchWarnings(repo, state, head)));
      } else {
        const sync = await syncSession(repo, state);
        if (sync.moved.includes(paths.ref)) head = await branchTip(repo, paths.ref);
        planted = sync.plantedGit;
        warnings.push(...sync.warnings);
      }
    } catch (error) {
      warnings.push(`could not bring the agent's commits back: ${error instanceof Error ? error.message : String(error)}`);
      planted = await plantedGit(state.worktree);
    }
  }
  let job: SessionView['job'] = null;
  if (state.job && state.container) {
    const settled: { job: NonNullable<SessionState['job']>; progress: JobProgress } =
      state.status === 'finished' && state.job.exitCode === null
        ? { job: state.job, progress: { state: 'lost', reason: 'the session was finished while it ran' } }
        : ((status && info ? settleFromStatus(state.job, status.job, info) : null) ?? (await settleJob(engine, state.container, state.job)));
    if (settled.job !== state.job) {
      state = { ...state, job: settled.job };
      await writeSession(repo, state);
    }
    const { progress } = settled;
    job = { ...settled.job, state: progress.state, ...(progress.state === 'lost' ? { reason: progress.reason } : {}) };
  }
  if (planted) warnings.push('the worktree folder holds a .git that para did not make: do not run git inside that folder');
  if (state.credentials === 'broker' && containerState === 'running')
    warnings.push(...brokerWarnings(brokers.get(brokerNames(state.network, brokerImageOf(state)).container), now));
  return {
    name: state.name,
    status: state.status,
    branch: state.branch,
    head,
    worktree: state.worktree,
    container: state.container,
    containerState,
    image: state.image,
    network: state.network,
    egress: state.container ? await egressView(engine, repo, state, byName) : null,
    engine: state.engine ?? null,
    runtime: state.runtime ?? null,
    limits: state.limits,
    uncommittedChanges:
      state.status === 'finished' ? null : report ? report.uncommitted : await changesInside(engine, state, repo, containerState).catch(() => null),
    createdAt: state.createdAt,
    ageSeconds: Math.max(0, Math.round((now - Date.parse(state.createdAt)) / 1000)),
    prompt: state.prompt,
    job,
    activity: state.status === 'finished' ? null : activity(job, status?.agent ?? null, running),
    orphan: missing.has(state.name) ? 'no-container' : null,
    plantedGit: planted,
    warnings,
  };
}

async function egressView(engine: Engine, repo: Repo, state: SessionState, byName: Map<string, ContainerInfo>): Promise<SessionView['egress']> {
  const egress = recordedEgress(state);
  if (egress.mode !== 'allowlist' || state.status === 'finished') return { ...egress, proxy: null };
  const paths = sessionPaths(repo, state.name);
  const proxy = proxyHealth(byName.get(paths.container), byName.get(paths.proxy), byName.get(paths.forwarder));
  // Refusals since `para egress NAME` last showed them (or since the start).
  const refused = proxy === 'running' ? await refusalsSince(engine, paths.proxy, state.egressSeenAt ?? state.createdAt).catch(() => null) : null;
  return { ...egress, proxy, refusedSinceLastLook: refused };
}

/** The engines a repository's sessions live on, with the shell's own first, each with its sessions. */
export interface EngineGroup {
  /** The engine, with the target it was reached at. */
  engine: Engine & { target: EngineTarget };
  states: SessionState[];
  containers: ContainerInfo[];
  volumes: VolumeInfo[];
  /** Why the engine could not be asked, when it could not. */
  unreachable: string | null;
}

/** Groups the sessions by engine and lists, on each, the containers and volumes labelled for the repository. */
export async function engineGroups(repo: Repo, states: SessionState[]): Promise<EngineGroup[]> {
  const groups = new Map<string, EngineGroup>();
  const add = (target: EngineTarget) => {
    const key = targetKey(target);
    if (!groups.has(key))
      groups.set(key, { engine: engineFor(target) as Engine & { target: EngineTarget }, states: [], containers: [], volumes: [], unreachable: null });
    return groups.get(key)!;
  };
  add(resolveEngine({ current: currentDockerContext() }));
  for (const state of states) add(engineOf(state)).states.push(state);
  await Promise.all(
    [...groups.values()].map(async (group) => {
      try {
        const { engine } = group;
        const [containers, volumes] = await Promise.all([engine.listContainers(repoLabels(repo.root)), engine.listVolumes(repoLabels(repo.root))]);
        // Another repository at the same path (another machine on a shared engine) is not this one.
        group.containers = containers.filter((c) => ownedBy(c.Config.Labels, repo));
        group.volumes = volumes.filter((v) => ownedBy(v.Labels, repo));
      } catch (error) {
        // Only an engine some session lives on must answer; the shell's own may be down. A bad
        // setting is not an engine's fault: it stops the command.
        if (!(error instanceof DockerError)) throw error;
        group.unreachable = errorMessage(error);
      }
    }),
  );
  return [...groups.values()];
}

function unreachableView(state: SessionState, why: string, now: number): SessionView {
  return {
    name: state.name,
    status: state.status,
    branch: state.branch,
    head: null,
    worktree: state.worktree,
    container: state.container,
    containerState: state.container && state.status !== 'finished' ? 'unreachable' : 'none',
    image: state.image,
    network: state.network,
    egress: state.container ? { ...recordedEgress(state), proxy: null } : null,
    engine: state.engine ?? null,
    runtime: state.runtime ?? null,
    limits: state.limits,
    uncommittedChanges: null,
    createdAt: state.createdAt,
    ageSeconds: Math.max(0, Math.round((now - Date.parse(state.createdAt)) / 1000)),
    prompt: state.prompt,
    job: state.job ? { ...state.job, state: 'lost', reason: 'its engine cannot be reached' } : null,
    activity: state.status === 'finished' ? null : { state: 'unknown', since: null, source: 'engine unreachable' },
    orphan: null,
    plantedGit: false,
    warnings: [`its engine (${describeEngine(engineOf(state))}) cannot be reached: ${why}`],
  };
}

/** Every session branch's commit, in one git call. */
async function sessionTips(repo: Repo): Promise<Map<string, string>> {
  const result = await git(['for-each-ref', '--format=%(objecttype) %(objectname) %(refname)', 'refs/heads/para/'], { cwd: repo.root, allowFailure: true });
  const tips = new Map<string, string>();
  for (const line of result.stdout.split('\n')) {
    const [type, oid, ref] = line.split(' ');
    if (type === 'commit' && ref) tips.set(ref, oid);
  }
  return tips;
}

/** Every session of the repository with its live state, on every engine it uses, and what belongs to none. */
export async function overview(repo: Repo, now = Date.now()): Promise<Overview> {
  const { sessions: states, problems } = await listSessions(repo);
  const [groups, tips] = await Promise.all([engineGroups(repo, states), sessionTips(repo)]);
  const sessions: SessionView[] = [];
  const orphanContainers: OrphanContainer[] = [];
  const orphanVolumes: string[] = [];
  const brokers: BrokerView[] = [];
  for (const group of groups) {
    if (group.unreachable) {
      for (const state of group.states) sessions.push(unreachableView(state, group.unreachable, now));
      continue;
    }
    const byName = new Map(group.containers.map((c) => [containerDisplayName(c), c]));
    // Only this engine's sessions claim what is on it.
    const { unclaimed, unclaimedVolumes, missing } = reconcile(repo, group.states, group.containers, group.volumes);
    const missingNames = new Set(missing.map((s) => s.name));
    const used = await brokerViews(group.engine, group.states, byName);
    brokers.push(...used);
    const byBroker = new Map(used.map((b) => [b.name, b]));
    sessions.push(...(await Promise.all(group.states.map((state) => view(group.engine, repo, state, byName, missingNames, now, tips, byBroker)))));
    const where = group.engine.target.context ?? group.engine.target.host;
    orphanContainers.push(
      ...unclaimed.map((c) => ({
        id: c.Id.slice(0, 12),
        name: containerDisplayName(c),
        session: c.Config.Labels?.[labels.session] ?? null,
        state: c.State.Status,
        engine: where,
      })),
    );
    orphanVolumes.push(...unclaimedVolumes.map((v) => v.Name));
  }
  sessions.sort((a, b) => a.name.localeCompare(b.name));
  return { repo: repo.root, sessions, orphanContainers, orphanVolumes, problems, brokers };
}
