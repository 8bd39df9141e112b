// Starting a session: worktree + branch + state (+ container), with a rollback of everything
// this start created when any step fails or the process is interrupted.
import fs from 'fs-extra';
import os from 'node:os';
import { onInterrupt } from './cleanup.ts';
import { config, labels } from './config.ts';
import { configDir } from './credentials.ts';
import { inspectImage, removeContainer, type ImageInfo } from './docker.ts';
import { ParaError, UsageError } from './errors.ts';
import { branchExists, git, GitError, repoSnapshot, type RepoInfo } from './git.ts';
import { imageUserIds } from './image.ts';
import { candidateName, nameFromPrompt } from './names.ts';
import {
  conversationFolder, createSessionContainer, ensureRunning, gitIdentity, handOverToAgent, hasConversation, startJob, trustWorkspace,
} from './session-container.ts';
import {
  containerName, createSessionExclusive, starterAlive, deleteSession, ensureParaDir, readSession, sessionPaths,
  validateSessionName, writeSession, type SessionState,
} from './session-store.ts';

export interface StartRequest {
  cwd: string;
  /** Explicit name; derived from the prompt when absent. */
  name?: string;
  prompt?: string;
  container: boolean;
  image: string;
  network?: string;
  detach: boolean;
  /** `-- CMD ARGS`: run this instead of claude. */
  command?: string[];
  /** Whether a terminal is attached (stdin and stdout). */
  tty: boolean;
  warn: (message: string) => void;
}

export type StartAction = 'attach' | 'job' | 'none';

export interface StartResult {
  session: SessionState;
  resumed: boolean;
  /** What the caller should do next. */
  action: StartAction;
  /** The command for attach or job. */
  command: string[];
}

/** The command the container runs for this start. */
function plannedCommand(request: StartRequest, continueConversation: boolean): { action: StartAction; command: string[] } {
  if (request.command?.length) return { action: request.detach ? 'job' : 'attach', command: request.command };
  if (request.detach) {
    if (!request.prompt) return { action: 'none', command: [] };
    // Safe: the agent is not root and runs in its own container.
    return { action: 'job', command: ['claude', '-p', request.prompt, '--dangerously-skip-permissions'] };
  }
  const command = ['claude'];
  if (continueConversation) command.push('--continue');
  if (request.prompt) command.push(request.prompt);
  return { action: 'attach', command };
}

interface Preconditions {
  repo: RepoInfo;
  head: string;
  baseBranch: string | null;
  /** The image, being inspected (container sessions only). */
  image?: Promise<Settled<ImageInfo | undefined>>;
  identity: Array<[string, string]>;
}

async function checkPreconditions(request: StartRequest): Promise<Preconditions> {
  if (!request.container && request.command?.length) throw new UsageError('a command after -- needs --container');
  if (request.container && !request.detach && !request.tty) {
    throw new UsageError('no terminal is attached, so an interactive session cannot start', 'add --detach (with a prompt or -- CMD to run it in the background)');
  }
  if (request.name !== undefined) {
    const problem = validateSessionName(request.name);
    if (problem) throw new UsageError(problem);
  }
  const snapshot = await repoSnapshot(request.cwd);
  const repo: RepoInfo = { root: snapshot.root, commonDir: snapshot.commonDir };
  const head = snapshot.head;
  if (!head) {
    throw new ParaError(`the repository ${repo.root} has no commit yet`, { code: 'no-commit', hint: 'make a first commit (git commit --allow-empty -m "initial"), then start again' });
  }
  // The image is inspected while the session is being made: a missing image then fails
  // `docker run --pull never` and the rollback removes what was made. A valid session name
  // always makes a valid branch name, and `worktree add -b` refuses an existing branch.
  const image = request.container ? settle(inspectImage(request.image)) : undefined;
  const identity = request.container ? await gitIdentity(repo.root) : [];
  return { repo, head, baseBranch: snapshot.branch ?? null, image, identity };
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** A promise that never rejects, so a probe left running cannot become an unhandled rejection. */
function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
}

async function requireImage(request: StartRequest, probe: Promise<Settled<ImageInfo | undefined>>): Promise<ImageInfo> {
  const result = await probe;
  if (!result.ok) throw result.error;
  if (!result.value) {
    throw new ParaError(`the image ${request.image} does not exist`, { code: 'image-missing', hint: request.image === config.authenticatedImage ? 'run: make image' : `build it, or run make image TAG=${request.image}` });
  }
  return result.value;
}

function warnOnUidMismatch(image: ImageInfo, name: string, warn: (m: string) => void): void {
  const uid = image.Config.Labels?.[labels.uid];
  const expected = String(imageUserIds().uid);
  if (uid && uid !== expected) warn(`${name} was built for UID ${uid}, you are ${expected}: files the agent writes will not be yours; run make image REBUILD_BASE=1`);
}

/** Reserves a session name by creating its state file; a derived name moves on to name-2, name-3... */
async function reserve(request: StartRequest, { repo, head, baseBranch }: Preconditions): Promise<{ state: SessionState; existing?: SessionState }> {
  const derived = request.name === undefined;
  const base = request.name ?? nameFromPrompt(request.prompt ?? '');
  for (let attempt = 1; attempt <= 100; attempt += 1) {
    const name = derived ? candidateName(base, attempt) : base;
    const paths = sessionPaths(repo.root, name);
    const state: SessionState = {
      version: 1,
      name,
      repo: repo.root,
      branch: paths.branch,
      baseBranch,
      baseCommit: head,
      worktree: paths.worktree,
      container: request.container ? containerName(repo.root, name) : null,
      image: request.container ? request.image : null,
      prompt: request.prompt ?? null,
      createdAt: new Date().toISOString(),
      status: 'starting',
      pid: process.pid,
      job: null,
    };
    if (derived && (await branchExists(repo.root, paths.branch))) continue;
    if (await createSessionExclusive(state)) return { state };
    const existing = await readSession(repo.root, name);
    if (derived) continue;
    if (!existing) continue; // removed in between: try again
    return { state, existing };
  }
  throw new ParaError(`could not find a free session name for ${base}`, { hint: 'give a name explicitly' });
}

/** Undo list for one start: each step pushes its inverse. */
class Rollback {
  private steps: Array<{ what: string; undo: () => Promise<unknown> }> = [];
  add(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo });
  }
  async run(warn: (m: string) => void): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step.undo();
      } catch (error) {
        warn(`rollback: could not undo ${step.what}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    this.steps = [];
  }
}

async function resume(request: StartRequest, existing: SessionState, pre: Preconditions): Promise<StartResult> {
  if (existing.status === 'starting') {
    if (starterAlive(existing)) {
      throw new ParaError(`session ${existing.name} is being started by another process (pid ${existing.pid})`, { code: 'session-busy', hint: 'wait for it to finish, then start again to attach' });
    }
    throw new ParaError(`session ${existing.name} was left half-started by an interrupted run`, { code: 'session-stale', hint: `run: npx tsx scripts/clean.ts (or scripts/cancel.ts ${existing.name})` });
  }
  if (existing.status === 'finished') {
    throw new ParaError(`session ${existing.name} is finished; its branch ${existing.branch} is kept`, { code: 'session-finished', hint: `choose another name, or delete the branch and its state: git branch -D ${existing.branch}; rm ${sessionPaths(existing.repo, existing.name).stateFile}` });
  }
  const { repo } = pre;
  const paths = sessionPaths(repo.root, existing.name);
  if (!(await fs.pathExists(paths.worktree))) {
    throw new ParaError(`the worktree of session ${existing.name} is missing (${paths.worktree})`, { code: 'worktree-missing', hint: `run: npx tsx scripts/cancel.ts ${existing.name} --force (the branch is archived)` });
  }
  const session = { ...existing };
  if (request.container) {
    session.container ??= containerName(repo.root, existing.name);
    session.image ??= request.image;
    if (!(await ensureRunning(session.container))) {
      const spec = { name: session.container, session: session.name, repoRoot: repo.root, gitCommonDir: repo.commonDir, paths, image: session.image, network: request.network };
      const probe = session.image === request.image && pre.image ? pre.image : settle(inspectImage(session.image));
      await requireImage({ ...request, image: session.image }, probe);
      await createSessionContainer(spec);
      await handOverToAgent(spec);
    }
    await writeSession(session);
  }
  // `claude --continue` fails when there is nothing to continue (a session that only ran commands).
  const continues = !request.command?.length && !request.detach && (request.container
    ? await hasConversation(session.container!, paths.worktree)
    : await fs.pathExists(conversationFolder(configDir(os.homedir(), process.env), paths.worktree)));
  const { action, command } = plannedCommand(request, continues);
  if (action === 'job' && request.container) await startResumedJob(session, command);
  return { session, resumed: true, action, command };
}

export async function startSession(request: StartRequest): Promise<StartResult> {
  const pre = await checkPreconditions(request);
  const { repo, head } = pre;
  const rollback = new Rollback();
  let interrupted = false;
  let settle = (): void => undefined;
  const settled = new Promise<void>((resolve) => { settle = resolve; });
  // On Ctrl-C/SIGTERM the step in flight ends first (its git or docker child may still be
  // creating something); the next checkpoint then throws and the catch below rolls back.
  const stopListening = onInterrupt(() => {
    interrupted = true;
    return settled;
  });
  const checkpoint = (): void => {
    if (interrupted) throw new ParaError('interrupted: everything this start created was removed', { code: 'interrupted' });
  };
  try {
    await ensureParaDir(repo.root);
    const { state, existing } = await reserve(request, pre);
    if (existing) return await resume(request, existing, pre);
    const paths = sessionPaths(repo.root, state.name);
    rollback.add('the state file', () => deleteSession(repo.root, state.name));
    checkpoint();
    let worktreeAdded = false;
    const addWorktree = async () => {
      const added = await git(['worktree', 'add', '-b', paths.branch, paths.worktree, head], { cwd: repo.root, allowFailure: true });
      if (added.exitCode !== 0 && /already exists/.test(added.stderr) && (await branchExists(repo.root, paths.branch))) {
        throw new ParaError(`the branch ${paths.branch} already exists and does not belong to a para session`, { code: 'branch-exists', hint: `choose another name, or rename that branch: git branch -m ${paths.branch} <new-name>` });
      }
      if (added.exitCode !== 0) throw new GitError(`git worktree add failed: ${added.stderr}`, { args: ['worktree', 'add'], ...added });
      worktreeAdded = true;
    };
    rollback.add('the worktree and branch', async () => {
      if (!worktreeAdded) return fs.rm(paths.worktree, { recursive: true, force: true });
      await git(['worktree', 'remove', '--force', paths.worktree], { cwd: repo.root, allowFailure: true });
      await git(['branch', '-D', paths.branch], { cwd: repo.root, allowFailure: true });
    });
    if (!request.container) {
      await addWorktree();
    } else {
      rollback.add('the run folder', () => fs.rm(paths.runDir, { recursive: true, force: true }));
      rollback.add('the container', () => removeContainer(state.container!));
      // The container mounts the worktree folder, so it exists first, empty (which `git worktree
      // add` accepts); git fills it while docker starts the container.
      await fs.mkdir(paths.worktree, { recursive: true });
      const spec = { name: state.container!, session: state.name, repoRoot: repo.root, gitCommonDir: repo.commonDir, paths, image: request.image, network: request.network, identity: pre.identity };
      const outcomes = await Promise.allSettled([addWorktree(), createSessionContainer(spec)]);
      // A missing image explains a failed docker run best, so it is reported first.
      warnOnUidMismatch(await requireImage(request, pre.image!), request.image, request.warn);
      const failed = outcomes.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
      if (failed) throw failed.reason;
      await handOverToAgent(spec);
      checkpoint();
      if (!request.detach) await trustWorkspace(state.container!, paths.worktree);
    }
    checkpoint();
    const planned = plannedCommand(request, false);
    const session: SessionState = { ...state, status: 'active', pid: undefined };
    if (planned.action === 'job' && request.container) {
      await startJob(state.container!, paths, planned.command);
      session.job = { command: planned.command, startedAt: new Date().toISOString(), exitCode: null, finishedAt: null };
    }
    checkpoint();
    await writeSession(session);
    checkpoint();
    return { session, resumed: false, action: planned.action, command: planned.command };
  } catch (error) {
    await rollback.run(request.warn);
    throw error;
  } finally {
    stopListening();
    settle();
  }
}

/** A background job in a resumed session, unless one is still running there. */
async function startResumedJob(session: SessionState, command: string[]): Promise<void> {
  const paths = sessionPaths(session.repo, session.name);
  if (session.job && session.job.exitCode === null && !(await fs.pathExists(paths.exitCodeFile))) {
    throw new ParaError(`session ${session.name} already has a background job running`, { code: 'job-running', hint: `follow it: npx tsx scripts/logs.ts ${session.name} -f` });
  }
  await startJob(session.container!, paths, command);
  session.job = { command, startedAt: new Date().toISOString(), exitCode: null, finishedAt: null };
  await writeSession(session);
}
