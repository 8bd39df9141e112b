// The session lifecycle after start: what is there (list), finish, cancel, clean.
import fs from 'fs-extra';
import { labels, MANAGED_BY } from './config.ts';
import { inspectContainer, listContainers, removeContainer, type ContainerInfo } from './docker.ts';
import { ParaError, UsageError } from './errors.ts';
import { branchExists, findRepo, git, listWorktrees, statusPorcelain, type RepoInfo } from './git.ts';
import {
  deleteSession, listSessions, paraDir, readJobExitCode, readSession, sessionPaths, starterAlive, validateSessionName,
  writeSession, type SessionState,
} from './session-store.ts';

export type ContainerState = 'running' | 'exited' | 'created' | 'missing' | 'none';

export interface SessionView {
  name: string;
  status: SessionState['status'];
  branch: string;
  worktree: string;
  container: string | null;
  containerState: ContainerState;
  /** null when the worktree is gone. */
  uncommittedChanges: boolean | null;
  createdAt: string;
  ageSeconds: number;
  prompt: string | null;
  job: SessionState['job'];
  /** Set when the session's container is gone: an orphaned session. */
  orphan: 'no-container' | null;
}

export interface OrphanContainer {
  id: string;
  name: string;
  session: string | null;
  state: string;
}

export interface Overview {
  repo: string;
  sessions: SessionView[];
  orphanContainers: OrphanContainer[];
}

/** Finds the repository and the named session, or says what to do. */
export async function resolveSession(cwd: string, name: string): Promise<{ repo: RepoInfo; state: SessionState }> {
  const problem = validateSessionName(name);
  if (problem) throw new UsageError(problem);
  const repo = await findRepo(cwd);
  const state = await readSession(repo.root, name);
  if (!state) {
    throw new ParaError(`there is no session ${name} in ${repo.root}`, { code: 'no-such-session', hint: 'list the sessions: npx tsx scripts/list.ts' });
  }
  return { repo, state };
}

/** Records a finished background job's exit code in the state, once. */
export async function refreshJob(state: SessionState): Promise<SessionState> {
  if (!state.job || state.job.exitCode !== null) return state;
  const paths = sessionPaths(state.repo, state.name);
  const code = await readJobExitCode(paths);
  if (code === undefined) return state;
  const finishedAt = (await fs.stat(paths.exitCodeFile)).mtime.toISOString();
  const updated = { ...state, job: { ...state.job, exitCode: code, finishedAt } };
  await writeSession(updated);
  return updated;
}

function containerState(info: ContainerInfo | undefined, expected: string | null): ContainerState {
  if (!expected) return 'none';
  if (!info) return 'missing';
  if (info.State.Running) return 'running';
  return info.State.Status === 'created' ? 'created' : 'exited';
}

async function hasChanges(worktree: string): Promise<boolean | null> {
  if (!(await fs.pathExists(worktree))) return null;
  return (await statusPorcelain(worktree)).length > 0;
}

export function repoContainerLabels(repoRoot: string): Record<string, string> {
  return { [labels.managedBy]: MANAGED_BY, [labels.repo]: repoRoot };
}

export function containerDisplayName(container: ContainerInfo): string {
  return container.Name.replace(/^\//, '') || container.Id.slice(0, 12);
}

export interface Reconciled {
  /** Containers labelled for the repository that no live session claims: what clean.ts removes. */
  unclaimed: ContainerInfo[];
  /** Active sessions whose container no longer exists. */
  missing: SessionState[];
}

/**
 * The one rule for orphans, used by list, clean and the doctor: a container is claimed by a
 * session that is not finished and names it, or that is still starting (it may not have
 * written its container name yet).
 */
export function reconcile(states: SessionState[], containers: ContainerInfo[]): Reconciled {
  const claimed = new Set(states.filter((s) => s.status !== 'finished' && s.container).map((s) => s.container));
  const starting = new Set(states.filter((s) => s.status === 'starting').map((s) => s.name));
  const present = new Set(containers.map(containerDisplayName));
  return {
    unclaimed: containers.filter((c) => !claimed.has(containerDisplayName(c)) && !starting.has(c.Config.Labels?.[labels.session] ?? '')),
    missing: states.filter((s) => s.status === 'active' && s.container !== null && !present.has(s.container)),
  };
}

/** Every session of the repository with its live state, and containers that belong to none. */
export async function overview(repo: RepoInfo, now = Date.now()): Promise<Overview> {
  const [states, containers] = await Promise.all([listSessions(repo.root), listContainers({ labels: repoContainerLabels(repo.root) })]);
  const byName = new Map(containers.map((c) => [containerDisplayName(c), c]));
  const { unclaimed, missing } = reconcile(states, containers);
  const sessions: SessionView[] = [];
  for (const raw of states) {
    const state = await refreshJob(raw);
    const info = state.container ? byName.get(state.container) : undefined;
    const cState = state.status === 'finished' ? 'none' : containerState(info, state.container);
    sessions.push({
      name: state.name,
      status: state.status,
      branch: state.branch,
      worktree: state.worktree,
      container: state.container,
      containerState: cState,
      uncommittedChanges: state.status === 'finished' ? null : await hasChanges(state.worktree),
      createdAt: state.createdAt,
      ageSeconds: Math.max(0, Math.round((now - Date.parse(state.createdAt)) / 1000)),
      prompt: state.prompt,
      job: state.job,
      orphan: missing.some((m) => m.name === state.name) ? 'no-container' : null,
    });
  }
  const orphanContainers = unclaimed
    .map((c) => ({ id: c.Id.slice(0, 12), name: containerDisplayName(c), session: c.Config.Labels?.[labels.session] ?? null, state: c.State.Status }));
  return { repo: repo.root, sessions, orphanContainers };
}

/** Commits everything in the worktree; false when there was nothing to commit. */
export async function commitAll(worktree: string, message: string, fallbackIdentity = false): Promise<boolean> {
  if ((await statusPorcelain(worktree)).length === 0) return false;
  await git(['add', '--all'], { cwd: worktree });
  const identity = await git(['var', 'GIT_AUTHOR_IDENT'], { cwd: worktree, allowFailure: true });
  const args = identity.exitCode === 0 || !fallbackIdentity ? ['commit', '--no-verify', '-q', '-m', message] : ['-c', 'user.name=para', '-c', 'user.email=para@localhost', 'commit', '--no-verify', '-q', '-m', message];
  const result = await git(args, { cwd: worktree, allowFailure: true });
  if (result.exitCode !== 0) {
    throw new ParaError(`could not commit the changes in ${worktree}: ${result.stderr || result.stdout}`, {
      code: 'commit-failed',
      hint: /tell me who you are|user\.email/i.test(result.stderr) ? 'set your identity: git config --global user.name "..." && git config --global user.email "..."' : 'commit by hand in the worktree, then run again',
    });
  }
  return true;
}

async function removeSessionContainer(state: SessionState): Promise<boolean> {
  if (!state.container) return false;
  return removeContainer(state.container, { force: true });
}

async function removeWorktree(repo: RepoInfo, worktree: string): Promise<void> {
  const records = await listWorktrees(repo.root);
  if (!records.some((r) => r.path === worktree) && !(await fs.pathExists(worktree))) return;
  // Everything was committed before; --force only clears ignored files and stale records.
  await git(['worktree', 'remove', '--force', worktree], { cwd: repo.root });
}

export interface FinishResult {
  name: string;
  branch: string;
  committed: boolean;
  baseBranch: string | null;
  mergeHint: string;
}

export async function finishSession(cwd: string, name: string, message: string | undefined): Promise<FinishResult> {
  const { repo, state } = await resolveSession(cwd, name);
  if (state.status === 'finished') throw new ParaError(`session ${name} is already finished; its branch ${state.branch} is kept`, { code: 'session-finished', hint: `merge it: git merge ${state.branch}` });
  if (state.status === 'starting') throw new ParaError(`session ${name} is still starting`, { code: 'session-busy', hint: 'wait for the start to end, or run scripts/clean.ts if it was interrupted' });
  const changes = await hasChanges(state.worktree);
  if (changes && !message) {
    throw new UsageError(`session ${name} has uncommitted changes, so a commit message is needed`, `npx tsx scripts/finish.ts ${name} -m "what was done"`);
  }
  const committed = changes ? await commitAll(state.worktree, message!) : false;
  await removeSessionContainer(state);
  await removeWorktree(repo, state.worktree);
  await fs.rm(sessionPaths(repo.root, name).runDir, { recursive: true, force: true });
  const finished: SessionState = { ...(await refreshJob(state)), status: 'finished', finishedAt: new Date().toISOString() };
  await writeSession(finished);
  const base = state.baseBranch;
  return {
    name,
    branch: state.branch,
    committed,
    baseBranch: base,
    mergeHint: base ? `git switch ${base} && git merge ${state.branch}` : `git merge ${state.branch}`,
  };
}

export interface CancelResult {
  name: string;
  archivedBranch: string | null;
  committedUncommittedWork: boolean;
}

export function archiveBranchName(name: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `para/archived/${stamp}/${name}`;
}

export async function cancelSession(cwd: string, name: string): Promise<CancelResult> {
  const { repo, state } = await resolveSession(cwd, name);
  let committed = false;
  if (await fs.pathExists(state.worktree)) {
    committed = await commitAll(state.worktree, `para: uncommitted work of session ${name}, saved when it was cancelled`, true);
  }
  await removeSessionContainer(state);
  await removeWorktree(repo, state.worktree);
  let archived: string | null = null;
  if (await branchExists(repo.root, state.branch)) {
    archived = archiveBranchName(name);
    await git(['branch', '-m', state.branch, archived], { cwd: repo.root });
  }
  await fs.rm(sessionPaths(repo.root, name).runDir, { recursive: true, force: true });
  await deleteSession(repo.root, name);
  return { name, archivedBranch: archived, committedUncommittedWork: committed };
}

export interface CleanPlan {
  containers: OrphanContainer[];
  worktrees: string[];
  staleStarts: string[];
}

/** Orphans of this repository only: never another repository's sessions, never unlabelled containers. */
export async function planClean(repo: RepoInfo): Promise<CleanPlan> {
  const view = await overview(repo);
  const prefix = `${paraDir(repo.root)}/worktrees/`;
  const records = await listWorktrees(repo.root);
  const worktrees = records.filter((r) => r.prunable && r.path.startsWith(prefix)).map((r) => r.path);
  const staleStarts: string[] = [];
  for (const state of await listSessions(repo.root)) {
    if (state.status !== 'starting' || starterAlive(state)) continue;
    // Someone wrote in it: it is not a leftover, it is work (list.ts shows it, cancel.ts archives it).
    if (await hasChanges(state.worktree)) continue;
    staleStarts.push(state.name);
  }
  return { containers: view.orphanContainers, worktrees, staleStarts };
}

export async function applyClean(repo: RepoInfo, plan: CleanPlan): Promise<void> {
  for (const container of plan.containers) {
    // Look again right before removing: it must still carry this repository's label.
    const info = await inspectContainer(container.id);
    if (info?.Config.Labels?.[labels.repo] === repo.root) await removeContainer(container.id, { force: true });
  }
  for (const worktree of plan.worktrees) await git(['worktree', 'remove', '--force', worktree], { cwd: repo.root });
  for (const name of plan.staleStarts) {
    const state = await readSession(repo.root, name);
    if (!state || state.status !== 'starting') continue;
    if (state.container) await removeContainer(state.container, { force: true });
    if (await fs.pathExists(state.worktree)) {
      // A half-started session has no work of its own unless someone wrote in it: keep it then.
      if ((await statusPorcelain(state.worktree)).length > 0) continue;
      await git(['worktree', 'remove', '--force', state.worktree], { cwd: repo.root });
    }
    const tip = await git(['rev-parse', '--verify', '--quiet', `refs/heads/${state.branch}`], { cwd: repo.root, allowFailure: true });
    if (tip.exitCode === 0 && tip.stdout === state.baseCommit) await git(['branch', '-D', state.branch], { cwd: repo.root });
    await fs.rm(sessionPaths(repo.root, name).runDir, { recursive: true, force: true });
    await deleteSession(repo.root, name);
  }
}
