// The session lifecycle after start: what is there (list), finish, cancel, clean. Each reads
// only para's own validated state, moves only refs under para/, and removes only resources whose
// labels name this repository and session.
import { config, labels } from '../config.ts';
import {
  DockerError,
  inspectContainer,
  inspectImage,
  inspectVolume,
  listContainers,
  listVolumes,
  pauseContainer,
  removeContainer,
  removeVolume,
  unpauseContainer,
  type ContainerInfo,
  type VolumeInfo,
} from '../docker.ts';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { errorMessage, ParaError, UsageError } from '../errors.ts';
import { onInterrupt } from '../cleanup.ts';
import { findRepo, git } from '../git.ts';
import { AGENT_VOLUME_DIR, WAIT_FOR_REPOSITORY } from './agent-repo.ts';
import { exec, labelledFor, ownedBy, repoLabels } from './container.ts';
import { settleJob, type JobProgress } from './job.ts';
import { archivePrefix, sessionPaths, validateSessionName, type Repo, type SessionPaths } from './paths.ts';
import {
  branchTip,
  deleteBranchAt,
  pruneHostWorktrees,
  removeSessionContainer,
  removeSessionVolume,
  retireFolder,
  Rollback,
  sessionContainer,
  sessionVolumeExists,
  startSessionContainer,
  createSessionContainer,
} from './resources.ts';
import { snapshotFolder, type Snapshot } from './snapshot.ts';
import { currentDockerContext, DEFAULT_ENGINE, describeEngine, onEngine, resolveEngine, type Engine } from '../engine.ts';
import { proxyHealth, recordedEgress, type EgressState, type ProxyHealth } from './egress.ts';
import { containerSpec, gitIdentity } from './start.ts';
import { mirrorVolume, receiveFromAgent, seedFromBundle } from './transport.ts';
import { deleteSession, listSessions, readSession, starterAlive, writeSession, type SessionState, type StateProblem } from './store.ts';
import { plantedGit, syncSession, type SyncResult } from './sync.ts';

export type Invocation = (verb: string) => string;

/** Finds the repository and the named session, or says what to do. */
export async function resolveSession(cwd: string, name: string, invocation: Invocation): Promise<{ repo: Repo; state: SessionState }> {
  const problem = validateSessionName(name);
  if (problem) throw new UsageError(problem);
  const repo = await findRepo(cwd);
  const state = await readSession(repo, name);
  if (!state) throw new ParaError(`there is no session ${name} in ${repo.root}`, { code: 'no-such-session', hint: `list the sessions: ${invocation('list')}` });
  return { repo, state };
}

// ---- list -------------------------------------------------------------------------------------

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
  egress: (EgressState & { proxy: ProxyHealth | null }) | null;
  /** The engine it lives on; null: the default engine. */
  engine: Engine | null;
  limits: SessionState['limits'];
  /** null when unknown (worktree gone, or the container cannot say). */
  uncommittedChanges: boolean | null;
  createdAt: string;
  ageSeconds: number;
  prompt: string | null;
  job: (SessionState['job'] & { state: JobProgress['state']; reason?: string }) | null;
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
export function reconcile(repo: Repo, states: SessionState[], containers: ContainerInfo[], volumes: VolumeInfo[] = []): Reconciled {
  const live = new Set(states.filter((s) => s.status !== 'finished').map((s) => s.name));
  const claims = (session: string | undefined, name: string, kind: 'container' | 'volume') => {
    if (!session || !live.has(session)) return false;
    const paths = sessionPaths(repo, session);
    return (kind === 'container' ? [paths.container, paths.proxy, paths.forwarder] : [paths.volume, paths.egressVolume]).includes(name);
  };
  const present = new Set(containers.map(containerDisplayName));
  return {
    unclaimed: containers.filter((c) => !claims(c.Config.Labels?.[labels.session], containerDisplayName(c), 'container')),
    // A remote engine's mirror of the history is claimed while any session there lives.
    unclaimedVolumes: volumes.filter(
      (v) =>
        !claims(v.Labels?.[labels.session] ?? undefined, v.Name, 'volume') &&
        !(v.Labels?.[labels.role] === 'mirror' && v.Name === mirrorVolume(repo) && live.size > 0),
    ),
    missing: states.filter((s) => s.status === 'active' && s.container !== null && !present.has(s.container)),
  };
}

async function changesInside(state: SessionState, repo: Repo, containerState: ContainerState): Promise<boolean | null> {
  const paths = sessionPaths(repo, state.name);
  if (containerState === 'running') {
    // The agent's git answers (its word only: this is display, nothing is decided on it).
    const result = await exec(paths.container, ['git', 'status', '--porcelain'], { allowFailure: true });
    return result.exitCode === 0 ? result.stdout.trim().length > 0 : null;
  }
  if (!state.container) return (await git(['status', '--porcelain'], { cwd: paths.worktree, allowFailure: true })).stdout.trim().length > 0;
  // Only the agent's git knows, and it is not running: list never reads the folder itself.
  return null;
}

async function view(repo: Repo, raw: SessionState, byName: Map<string, ContainerInfo>, missing: Set<string>, now: number): Promise<SessionView> {
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
  let planted = false;
  if (state.status === 'active' && state.container) {
    try {
      const sync = await syncSession(repo, state);
      planted = sync.plantedGit;
      warnings.push(...sync.warnings);
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
        : await settleJob(state.container, state.job);
    if (settled.job !== state.job) {
      state = { ...state, job: settled.job };
      await writeSession(repo, state);
    }
    const { progress } = settled;
    job = { ...settled.job, state: progress.state, ...(progress.state === 'lost' ? { reason: progress.reason } : {}) };
  }
  if (planted) warnings.push('the worktree folder holds a .git that para did not make: do not run git inside that folder');
  return {
    name: state.name,
    status: state.status,
    branch: state.branch,
    head: await branchTip(repo, sessionPaths(repo, state.name).ref),
    worktree: state.worktree,
    container: state.container,
    containerState,
    image: state.image,
    network: state.network,
    egress: state.container ? egressView(repo, state, byName) : null,
    engine: state.engine ?? null,
    limits: state.limits,
    uncommittedChanges: state.status === 'finished' ? null : await changesInside(state, repo, containerState).catch(() => null),
    createdAt: state.createdAt,
    ageSeconds: Math.max(0, Math.round((now - Date.parse(state.createdAt)) / 1000)),
    prompt: state.prompt,
    job,
    orphan: missing.has(state.name) ? 'no-container' : null,
    plantedGit: planted,
    warnings,
  };
}

function egressView(repo: Repo, state: SessionState, byName: Map<string, ContainerInfo>): SessionView['egress'] {
  const egress = recordedEgress(state);
  if (egress.mode !== 'allowlist' || state.status === 'finished') return { ...egress, proxy: null };
  const paths = sessionPaths(repo, state.name);
  return { ...egress, proxy: proxyHealth(byName.get(paths.container), byName.get(paths.proxy), byName.get(paths.forwarder)) };
}

/** The engines a repository's sessions live on, with the shell's own first, each with its sessions. */
export interface EngineGroup {
  engine: Engine;
  states: SessionState[];
  containers: ContainerInfo[];
  volumes: VolumeInfo[];
  /** Why the engine could not be asked, when it could not. */
  unreachable: string | null;
}

function engineKey(engine: Engine): string {
  return `${engine.context ?? ''}\n${engine.host ?? ''}`;
}

/** The engine a session lives on (sessions from before engines were recorded: the default one). */
export function engineOf(state: SessionState): Engine {
  return state.engine ?? DEFAULT_ENGINE;
}

/** Groups the sessions by engine and lists, on each, the containers and volumes labelled for the repository. */
export async function engineGroups(repo: Repo, states: SessionState[]): Promise<EngineGroup[]> {
  const groups = new Map<string, EngineGroup>();
  const add = (engine: Engine) => {
    const key = engineKey(engine);
    if (!groups.has(key)) groups.set(key, { engine, states: [], containers: [], volumes: [], unreachable: null });
    return groups.get(key)!;
  };
  add(resolveEngine({ current: currentDockerContext() }));
  for (const state of states) add(engineOf(state)).states.push(state);
  await Promise.all(
    [...groups.values()].map((group) =>
      onEngine(group.engine, async () => {
        try {
          const [containers, volumes] = await Promise.all([listContainers({ labels: repoLabels(repo.root) }), listVolumes({ labels: repoLabels(repo.root) })]);
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
    ),
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
    limits: state.limits,
    uncommittedChanges: null,
    createdAt: state.createdAt,
    ageSeconds: Math.max(0, Math.round((now - Date.parse(state.createdAt)) / 1000)),
    prompt: state.prompt,
    job: state.job ? { ...state.job, state: 'lost', reason: 'its engine cannot be reached' } : null,
    orphan: null,
    plantedGit: false,
    warnings: [`its engine (${describeEngine(engineOf(state))}) cannot be reached: ${why}`],
  };
}

/** Every session of the repository with its live state, on every engine it uses, and what belongs to none. */
export async function overview(repo: Repo, now = Date.now()): Promise<Overview> {
  const { sessions: states, problems } = await listSessions(repo);
  const groups = await engineGroups(repo, states);
  const sessions: SessionView[] = [];
  const orphanContainers: OrphanContainer[] = [];
  const orphanVolumes: string[] = [];
  for (const group of groups) {
    if (group.unreachable) {
      for (const state of group.states) sessions.push(unreachableView(state, group.unreachable, now));
      continue;
    }
    const byName = new Map(group.containers.map((c) => [containerDisplayName(c), c]));
    // Only this engine's sessions claim what is on it.
    const { unclaimed, unclaimedVolumes, missing } = reconcile(repo, group.states, group.containers, group.volumes);
    const missingNames = new Set(missing.map((s) => s.name));
    sessions.push(...(await onEngine(group.engine, () => Promise.all(group.states.map((state) => view(repo, state, byName, missingNames, now))))));
    const where = group.engine.context ?? group.engine.host;
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
  return { repo: repo.root, sessions, orphanContainers, orphanVolumes, problems };
}

// ---- finish and cancel ------------------------------------------------------------------------

interface Captured {
  sync: SyncResult | null;
  snapshot: Snapshot;
  /** Where the uncommitted files were committed, when there were any. */
  wipRef: string | null;
  /** A tar of the agent's whole repository, made when not everything in it could be brought back as refs. */
  repositoryTar: string | null;
  warnings: string[];
}

/** Makes the session's container readable again: started if stopped, re-created on its volume if removed. */
async function reachContainer(repo: Repo, state: SessionState, paths: SessionPaths, warnings: string[]): Promise<boolean> {
  const found = await sessionContainer(repo, paths);
  if (found.presence === 'stopped') await startSessionContainer(repo, paths);
  // A finish interrupted mid-way may have left it paused.
  if (found.paused) await unpauseContainer(paths.container);
  if (found.presence !== 'missing') return true;
  if (!(await sessionVolumeExists(repo, paths))) {
    warnings.push(
      `the container and volume of session ${state.name} are gone: commits made inside since para last synced are lost; the folder's files are kept`,
    );
    return false;
  }
  if (!state.image || !(await inspectImage(state.image))) {
    warnings.push(
      `the container of session ${state.name} is gone and its image ${state.image ?? ''} too: the agent's repository stays in the volume ${paths.volume}`,
    );
    return false;
  }
  const rollback = new Rollback();
  const tip = (await branchTip(repo, paths.ref)) ?? state.baseCommit;
  const spec = await containerSpec(repo, state, state.image, [], { commit: tip, checkout: false });
  await createSessionContainer(spec, rollback);
  // A remote volume holds the repository: the new container marks it ready once it sees it.
  if (state.engine?.remote) await seedFromBundle(paths.container, repo, paths, state.image);
  return true;
}

/**
 * A remote session's uncommitted files, committed inside its container by the agent's own git
 * (it is the agent's work either way) with a private index, on top of its HEAD, at
 * refs/para-snapshot/wip; what it prints is untrusted and parsed strictly. The commit comes back
 * through the same checked bundle as the agent's other commits.
 */
const REMOTE_SNAPSHOT = `${WAIT_FOR_REPOSITORY}
set -eu
probe="$1"; message="$2"
export GIT_INDEX_FILE="$(mktemp)"
trap 'rm -f "$GIT_INDEX_FILE"' EXIT
git read-tree HEAD 2>/dev/null || git read-tree --empty
git add -A
git status --porcelain --ignored | sed -n 's/^!! //p' | head -n 1000 | sed 's/^/ignored /'
# A nested repository is not the agent's files to commit here: left out, and reported, so its volume is kept.
git ls-files -s | awk -F '\t' '$1 ~ /^160000 / {print $2}' | head -n 1000 | while IFS= read -r p; do git rm -q --cached -- "$p"; echo "ignored $p"; done
tree=$(git write-tree)
head=$(git rev-parse -q --verify 'HEAD^{commit}' || true)
if [ -n "$head" ] && [ "$tree" = "$(git rev-parse "$head^{tree}")" ]; then echo "snapshot none"; exit 0; fi
if [ "$probe" = 1 ]; then echo "snapshot changes"; exit 0; fi
commit=$(if [ -n "$head" ]; then git commit-tree "$tree" -p "$head" -m "$message"; else git commit-tree "$tree" -m "$message"; fi)
git update-ref refs/para-snapshot/wip "$commit"
echo "snapshot $commit"`;

async function remoteSnapshot(
  container: string,
  message: string,
  probe: boolean,
  identity: { name: string; email: string },
): Promise<{ commit: string | null; changes: boolean; ignored: string[] }> {
  const env = { GIT_AUTHOR_NAME: identity.name, GIT_AUTHOR_EMAIL: identity.email, GIT_COMMITTER_NAME: identity.name, GIT_COMMITTER_EMAIL: identity.email };
  const result = await exec(
    container,
    ['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'sh', '-c', REMOTE_SNAPSHOT, 'para-snapshot', probe ? '1' : '0', message],
    {
      allowFailure: true,
      timeoutMs: config.snapshot.timeoutMs,
    },
  );
  if (result.exitCode !== 0)
    throw new ParaError(`the session's files could not be committed inside its container: ${result.stderr.trim()}`, { code: 'snapshot-failed' });
  const lines = result.stdout.split('\n');
  const ignored = lines.filter((l) => l.startsWith('ignored ')).map((l) => l.slice('ignored '.length));
  const verdict = lines.find((l) => l.startsWith('snapshot '))?.slice('snapshot '.length) ?? '';
  if (verdict === 'none') return { commit: null, changes: false, ignored };
  if (verdict === 'changes') return { commit: null, changes: true, ignored };
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(verdict))
    throw new ParaError('the session container answered the snapshot with nonsense', { code: 'snapshot-failed' });
  return { commit: verdict, changes: true, ignored };
}

async function identityOf(repo: Repo): Promise<{ name: string; email: string }> {
  const found = new Map(await gitIdentity(repo.root));
  return { name: found.get('user.name') ?? 'para', email: found.get('user.email') ?? 'para@localhost' };
}

/**
 * Everything in the session's volume (the agent's repository and anything beside it) as a tar on
 * the host: data, never opened by para. Made once no agent process runs; links are stored as links.
 */
async function saveRepositoryTar(container: string, warnings: string[]): Promise<string | null> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'para-agent-repo-'));
  const file = path.join(dir, 'agent-repository.tar');
  const result = await exec(container, ['tar', '--sparse', '-C', AGENT_VOLUME_DIR, '-cf', '-', '.'], {
    root: true,
    stdoutFile: file,
    maxStdoutBytes: config.maxBundleBytes,
    timeoutMs: 10 * 60_000,
    allowFailure: true,
  }).catch((error: unknown) => {
    if (error instanceof ParaError && error.code === 'output-too-large')
      return { exitCode: -1, stdout: '', stderr: `it weighs more than PARA_MAX_BUNDLE_MB (${Math.round(config.maxBundleBytes / 1024 / 1024)} MB)` };
    throw error;
  });
  if (result.exitCode === 0) return file;
  await fs.rm(dir, { recursive: true, force: true });
  warnings.push(`the agent's repository could not be saved as a tar (${result.stderr.trim() || `exit code ${result.exitCode}`}); it stays in its volume`);
  return null;
}

/** Ends every process of the agent's user in the container: nothing it runs can change what is being saved. */
async function stopAgent(container: string): Promise<void> {
  await exec(container, ['sh', '-c', 'kill -KILL -1 2>/dev/null; exit 0'], { allowFailure: true });
}

/**
 * Brings everything the agent made to the host: its branch to para/NAME, its other refs under
 * `prefix`, and its uncommitted files as a commit on top of its HEAD (read by the host's git as
 * data while the container is paused, so nothing can change under it). What cannot come back as
 * refs is kept as a tar of the agent's repository.
 */
async function captureWork(repo: Repo, state: SessionState, prefix: string, message: string | undefined, requireMessage: Invocation | null): Promise<Captured> {
  const paths = sessionPaths(repo, state.name);
  const warnings: string[] = [];
  const identity = await identityOf(repo);
  const running = state.container ? await reachContainer(repo, state, paths, warnings) : false;
  const snapshotOf = (base: string, probe: boolean) =>
    snapshotFolder({
      repo,
      folder: paths.worktree,
      base,
      message: message ?? `para: uncommitted work of session ${state.name}`,
      identity,
      expectGitFile: !state.container,
      probe,
    });
  // Nothing may change the folder while the host's git reads it.
  const frozen = async <T>(work: () => Promise<T>): Promise<T> => {
    if (running) await pauseContainer(paths.container);
    try {
      return await work();
    } finally {
      if (running) await unpauseContainer(paths.container).catch(() => undefined);
    }
  };
  const remote = Boolean(state.engine?.remote);
  if (requireMessage && !message) {
    const probe = remote
      ? { commit: running && (await remoteSnapshot(paths.container, 'para: probe', true, identity)).changes ? 'changes' : null }
      : await frozen(async () => snapshotOf((await branchTip(repo, paths.ref)) ?? state.baseCommit, true));
    if (probe.commit)
      throw new UsageError(
        `session ${state.name} has uncommitted changes, so a commit message is needed`,
        `${requireMessage('finish')} ${state.name} -m "what was done"`,
      );
  }
  let sync: SyncResult | null = null;
  let repositoryTar: string | null = null;
  let inside: Awaited<ReturnType<typeof remoteSnapshot>> | null = null;
  if (running) {
    await stopAgent(paths.container);
    try {
      sync = await syncSession(repo, state, { keepOthersUnder: prefix });
      warnings.push(...sync.warnings);
    } catch (error) {
      warnings.push(`the agent's repository could not be brought back as branches (${errorMessage(error)})`);
    }
    if (remote) {
      inside = await remoteSnapshot(paths.container, message ?? `para: uncommitted work of session ${state.name}`, false, identity).catch((error: unknown) => {
        warnings.push(errorMessage(error));
        return null;
      });
    }
    // Ignored files of a remote session exist only in its volume: the volume is kept as a tar.
    if (!sync || sync.notKept.length > 0 || (remote && (!inside || inside.ignored.length > 0)))
      repositoryTar = await saveRepositoryTar(paths.container, warnings);
  }
  const stopTar = repositoryTar ? onInterrupt(() => fs.rm(path.dirname(repositoryTar!), { recursive: true, force: true })) : () => undefined;
  try {
    let base = (await branchTip(repo, paths.ref)) ?? state.baseCommit;
    let target = paths.ref;
    const head = sync?.agent?.head;
    if (head && (await branchTip(repo, head))) {
      base = head;
      if (sync?.agent?.headRef !== paths.ref) target = `refs/heads/${prefix}.wip`;
    }
    let wipRef: string | null = null;
    let snapshot: Snapshot;
    if (remote) {
      snapshot = { commit: inside?.commit ?? null, uncaptured: inside?.ignored ?? [], plantedGit: false, refused: null, written: Boolean(inside?.changes) };
      if (inside?.commit) {
        // Brought back like any of the agent's commits: a checked bundle, then only para's ref moves.
        await receiveFromAgent(paths.container, repo, [{ source: 'refs/para-snapshot/wip', oid: inside.commit, target }], [state.baseCommit, base]);
        wipRef = target.slice('refs/heads/'.length);
      }
    } else {
      snapshot = await frozen(() => snapshotOf(base, false));
      if (snapshot.commit) {
        const old = (await branchTip(repo, target)) ?? '0'.repeat(snapshot.commit.length);
        await git(['update-ref', '-m', 'para: uncommitted work', target, snapshot.commit, old], { cwd: repo.root });
        wipRef = target.slice('refs/heads/'.length);
      }
    }
    if (snapshot.refused) warnings.push(`the folder's files could not be committed: ${snapshot.refused}`);
    if (snapshot.plantedGit) warnings.push('the worktree folder held a .git that para did not make; it was never used');
    return { sync, snapshot, wipRef, repositoryTar, warnings };
  } catch (error) {
    if (repositoryTar) await fs.rm(path.dirname(repositoryTar), { recursive: true, force: true });
    throw error;
  } finally {
    stopTar();
  }
}

/**
 * Removes the container, the volume and the folder. What could not be committed (ignored files,
 * nested repositories, refused files, the agent's repository) goes to .para/kept/NAME-<time>/.
 */
async function retire(repo: Repo, state: SessionState, captured: Captured): Promise<string | null> {
  const paths = sessionPaths(repo, state.name);
  const keepFiles = captured.snapshot.uncaptured.length > 0 || captured.snapshot.refused !== null;
  if (state.container) await removeSessionContainer(repo, paths);
  const kept = await retireFolder(repo, paths, keepFiles, captured.repositoryTar);
  if (state.container) {
    // Without a copy of its repository, a volume whose refs did not all come back stays.
    if (captured.sync && captured.sync.notKept.length === 0) await removeSessionVolume(repo, paths);
    else if (captured.repositoryTar) await removeSessionVolume(repo, paths);
    else if (await sessionVolumeExists(repo, paths)) captured.warnings.push(`the agent's repository is kept in the docker volume ${paths.volume}`);
  }
  if (!state.container) await pruneHostWorktrees(repo);
  return kept;
}

export interface FinishResult {
  name: string;
  branch: string;
  committed: boolean;
  wipRef: string | null;
  savedRefs: string[];
  keptFolder: string | null;
  uncaptured: string[];
  baseBranch: string | null;
  mergeHint: string;
  warnings: string[];
}

function checkFinishable(state: SessionState, invocation: Invocation): void {
  if (state.status === 'finished')
    throw new ParaError(`session ${state.name} is already finished; its branch ${state.branch} is kept`, {
      code: 'session-finished',
      hint: `merge it: git merge ${state.branch}`,
    });
  if (state.status === 'starting' && starterAlive(state))
    throw new ParaError(`session ${state.name} is still starting`, {
      code: 'session-busy',
      hint: `wait for the start to end, or run ${invocation('clean')} if it was interrupted`,
    });
}

function savedRefs(captured: Captured, mainRef: string): string[] {
  const saved = (captured.sync?.moved ?? []).filter((ref) => ref !== mainRef).map((ref) => ref.slice('refs/heads/'.length));
  if (captured.wipRef && captured.wipRef !== mainRef.slice('refs/heads/'.length)) saved.push(captured.wipRef);
  return [...new Set(saved)];
}

/** The job's exit status, read before finish ends the agent's processes (a finished job is not "lost"). */
async function finalJob(state: SessionState): Promise<SessionState['job']> {
  if (!state.job || !state.container) return state.job;
  return (await settleJob(state.container, state.job).catch(() => undefined))?.job ?? state.job;
}

export async function finishSession(cwd: string, name: string, message: string | undefined, invocation: Invocation): Promise<FinishResult> {
  const resolved = await resolveSession(cwd, name, invocation);
  return onEngine(resolved.state.engine, async () => {
    const { repo } = resolved;
    checkFinishable(resolved.state, invocation);
    const state = { ...resolved.state, job: await finalJob(resolved.state) };
    const paths = sessionPaths(repo, name);
    const captured = await captureWork(repo, state, archivePrefix(name), message, invocation);
    const kept = await retire(repo, state, captured);
    await writeSession(repo, { ...state, status: 'finished', finishedAt: new Date().toISOString(), pid: undefined });
    const base = state.baseBranch;
    return {
      name,
      branch: state.branch,
      committed: captured.wipRef === paths.branch,
      wipRef: captured.wipRef,
      savedRefs: savedRefs(captured, paths.ref),
      keptFolder: kept,
      uncaptured: captured.snapshot.uncaptured,
      baseBranch: base,
      mergeHint: base ? `git switch ${base} && git merge ${state.branch}` : `git merge ${state.branch}`,
      warnings: captured.warnings,
    };
  });
}

export interface CancelResult {
  name: string;
  archivedBranch: string | null;
  committedUncommittedWork: boolean;
  savedRefs: string[];
  keptFolder: string | null;
  uncaptured: string[];
  warnings: string[];
}

export async function cancelSession(cwd: string, name: string, invocation: Invocation): Promise<CancelResult> {
  const { repo, state } = await resolveSession(cwd, name, invocation);
  return onEngine(state.engine, async () => {
    if (state.status === 'starting' && starterAlive(state)) checkFinishable(state, invocation);
    const paths = sessionPaths(repo, name);
    const prefix = archivePrefix(name);
    const nothing: Captured = {
      sync: null,
      snapshot: { commit: null, uncaptured: [], plantedGit: false, refused: null, written: false },
      wipRef: null,
      repositoryTar: null,
      warnings: [],
    };
    const captured =
      state.status === 'finished'
        ? nothing
        : await captureWork(repo, state, prefix, `para: uncommitted work of session ${name}, saved when it was cancelled`, null);
    const kept = state.status === 'finished' ? null : await retire(repo, state, captured);
    let archived: string | null = null;
    if (await branchTip(repo, paths.ref)) {
      await git(['branch', '-m', paths.branch, prefix], { cwd: repo.root });
      archived = prefix;
    }
    await deleteSession(repo, name);
    return {
      name,
      archivedBranch: archived,
      committedUncommittedWork: captured.wipRef !== null,
      savedRefs: savedRefs(captured, paths.ref),
      keptFolder: kept,
      uncaptured: captured.snapshot.uncaptured,
      warnings: captured.warnings,
    };
  });
}

export interface SyncOneResult {
  name: string;
  branch: string;
  head: string | null;
  moved: string[];
  skipped: string | null;
  plantedGit: boolean;
  /** With files: the archive branch now holding the uncommitted files (null: there were none). */
  filesRef: string | null;
  /** With files: what stays in the session only (ignored files, nested repositories). */
  uncaptured: string[];
}

/**
 * Brings the agent's commits to para/NAME; with `files`, a remote session's uncommitted files too,
 * committed inside its container on top of its HEAD and kept on para/archived/<time>/NAME.wip.
 */
export async function syncOne(cwd: string, name: string, invocation: Invocation, options: { files?: boolean } = {}): Promise<SyncOneResult> {
  const { repo, state } = await resolveSession(cwd, name, invocation);
  return onEngine(state.engine, async () => {
    if (state.status === 'finished')
      throw new ParaError(`session ${name} is finished; its branch ${state.branch} holds its work`, { code: 'session-finished' });
    if (options.files && !state.engine?.remote) {
      throw new UsageError(`session ${name} is on this machine's engine: its files are in ${state.worktree} already`, 'open that folder, or leave out --files');
    }
    const result = await syncSession(repo, state);
    let filesRef: string | null = null;
    let uncaptured: string[] = [];
    if (options.files && state.container) {
      const inside = await remoteSnapshot(state.container, `para: uncommitted work of session ${name}`, false, await identityOf(repo));
      uncaptured = inside.ignored;
      if (inside.commit) {
        const target = `refs/heads/${archivePrefix(name)}.wip`;
        const tip = (await branchTip(repo, sessionPaths(repo, name).ref)) ?? state.baseCommit;
        await receiveFromAgent(state.container, repo, [{ source: 'refs/para-snapshot/wip', oid: inside.commit, target }], [state.baseCommit, tip]);
        filesRef = target.slice('refs/heads/'.length);
      }
    }
    return {
      name,
      branch: state.branch,
      head: await branchTip(repo, `refs/heads/${state.branch}`),
      moved: result.moved,
      skipped: result.skipped,
      plantedGit: result.plantedGit,
      filesRef,
      uncaptured,
    };
  });
}

// ---- clean ------------------------------------------------------------------------------------

export interface CleanPlan {
  containers: OrphanContainer[];
  volumes: string[];
  /** The engine each volume is on (null: the default engine). */
  volumeEngines: Record<string, string | null>;
  staleStarts: string[];
  /** Half-started sessions with files in them: kept (cancel keeps their work). */
  keptStarts: string[];
  /** Finished sessions whose branch is gone (merged and deleted): only their record is left. */
  finished: string[];
  problems: StateProblem[];
}

/** Orphans of this repository only: never another repository's sessions, never unlabelled resources. */
export async function planClean(repo: Repo): Promise<CleanPlan> {
  const { sessions, problems } = await listSessions(repo);
  const stale = sessions.filter((s) => s.status === 'starting' && !starterAlive(s));
  const staleNames = new Set(stale.map((s) => s.name));
  const containers: OrphanContainer[] = [];
  const volumes: string[] = [];
  const volumeEngines: Record<string, string | null> = {};
  for (const group of await engineGroups(repo, sessions)) {
    if (group.unreachable) {
      if (group.states.length)
        problems.push({ file: '', message: `${describeEngine(group.engine)} cannot be reached: its sessions are left as they are (${group.unreachable})` });
      continue;
    }
    const where = group.engine.context ?? group.engine.host;
    const { unclaimed, unclaimedVolumes } = reconcile(repo, group.states, group.containers, group.volumes);
    containers.push(
      ...unclaimed
        .filter((c) => !staleNames.has(c.Config.Labels?.[labels.session] ?? ''))
        .map((c) => ({
          id: c.Id.slice(0, 12),
          name: containerDisplayName(c),
          session: c.Config.Labels?.[labels.session] ?? null,
          state: c.State.Status,
          engine: where,
        })),
    );
    for (const volume of unclaimedVolumes) {
      volumes.push(volume.Name);
      volumeEngines[volume.Name] = where;
    }
  }
  const staleStarts: string[] = [];
  const keptStarts: string[] = [];
  for (const state of stale) await onEngine(engineOf(state), () => judgeStale(repo, state, staleStarts, keptStarts));
  const finished: string[] = [];
  for (const state of sessions) if (state.status === 'finished' && !(await branchTip(repo, sessionPaths(repo, state.name).ref))) finished.push(state.name);
  return { finished, containers, volumes, volumeEngines, staleStarts, keptStarts, problems };
}

/** A half-started session is work when its folder has files or its branch moved; else it is removed. */
async function judgeStale(repo: Repo, state: SessionState, staleStarts: string[], keptStarts: string[]): Promise<void> {
  {
    const paths = sessionPaths(repo, state.name);
    if (state.engine?.remote) {
      // No host folder: the branch tells (the volume, if any, is removed with the session).
      const tip = await branchTip(repo, paths.ref);
      (tip && tip !== state.baseCommit ? keptStarts : staleStarts).push(state.name);
      return;
    }
    // Nothing of it may run while its folder is read.
    const found = state.container ? await sessionContainer(repo, paths) : { presence: 'missing' as const };
    if (found.presence === 'running') await pauseContainer(paths.container);
    let snapshot: Snapshot;
    try {
      snapshot = await snapshotFolder({
        repo,
        folder: paths.worktree,
        base: state.baseCommit,
        message: 'para: probe',
        identity: { name: 'para', email: 'para@localhost' },
        expectGitFile: !state.container,
        probe: true,
      });
    } finally {
      if (found.presence === 'running') await unpauseContainer(paths.container);
    }
    const tip = await branchTip(repo, paths.ref);
    // Files missing from the folder are an unfinished checkout, not work: only additions and changes count.
    if (snapshot.written || snapshot.uncaptured.length > 0 || (tip && tip !== state.baseCommit)) keptStarts.push(state.name);
    else staleStarts.push(state.name);
  }
}

function engineNamed(where: string | null): Engine {
  if (!where) return DEFAULT_ENGINE;
  return where.includes('://') ? { context: null, host: where, remote: true } : { context: where, host: null, remote: true };
}

export async function applyClean(repo: Repo, plan: CleanPlan, warn: (m: string) => void): Promise<void> {
  for (const container of plan.containers) {
    await onEngine(engineNamed(container.engine), async () => {
      // Look again right before removing: it must still carry this repository's label.
      const info = await inspectContainer(container.id);
      if (info && labelledFor(info.Config.Labels, repo)) await removeContainer(info.Id, { force: true });
    });
  }
  for (const volume of plan.volumes) {
    await onEngine(engineNamed(plan.volumeEngines[volume] ?? null), async () => {
      const info = await inspectVolume(volume);
      if (info && labelledFor(info.Labels, repo)) {
        await removeVolume(volume).catch((error: unknown) => warn(`could not remove the volume ${volume}: ${String(error)}`));
      }
    });
  }
  for (const name of plan.staleStarts) {
    try {
      const state = await readSession(repo, name);
      if (state?.status !== 'starting' || starterAlive(state)) continue;
      const paths = sessionPaths(repo, name);
      await onEngine(engineOf(state), async () => {
        await removeSessionContainer(repo, paths);
        await removeSessionVolume(repo, paths);
      });
      await retireFolder(repo, paths, false, null);
      if (!state.container) await pruneHostWorktrees(repo);
      await deleteBranchAt(repo, paths, state.baseCommit);
      await deleteSession(repo, name);
    } catch (error) {
      warn(`could not clean the half-started session ${name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  for (const name of plan.finished) {
    const state = await readSession(repo, name).catch(() => undefined);
    if (state?.status === 'finished' && !(await branchTip(repo, sessionPaths(repo, name).ref))) await deleteSession(repo, name);
  }
  await pruneHostWorktrees(repo);
}
