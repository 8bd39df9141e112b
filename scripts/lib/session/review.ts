// Reading a session's work on the host (para diff, para log): its commits are brought to para/NAME
// first, and its uncommitted files are committed as data (the host's git on the folder for a
// session on this machine, the agent's git inside its container for a remote one), never checked
// out. Everything shown was written by the agent: the caller escapes it before a terminal sees it.
import { git } from '../git.ts';
import type { Repo } from '../repo.ts';
import { identityOf, remoteSnapshot } from './capture.ts';
import { archivePrefix, sessionPaths } from './paths.ts';
import { branchTip, sessionContainer } from './resources.ts';
import { resolveSession, type Invocation } from './resolve.ts';
import { snapshotFolder } from './snapshot.ts';
import { sessionEngine, type SessionState } from './store.ts';
import { syncSession } from './sync.ts';
import { receiveFromAgent } from './transport.ts';

/** Whether the session's uncommitted files are in what is shown. */
export type Uncommitted = 'included' | 'none' | 'unreachable' | 'not-asked';

export interface SessionWork {
  repo: Repo;
  state: SessionState;
  /** The commit the session started from. */
  base: string;
  /** para/NAME's tip after the sync (null: the branch is gone). */
  head: string | null;
  /** What to compare with base: head, or a commit of the uncommitted files on top of it. */
  tip: string;
  uncommitted: Uncommitted;
  /** Paths left out (ignored files, nested repositories); agent-written. */
  uncaptured: string[];
  warnings: string[];
}

/**
 * The session's work as commits on the host. With `files`, its uncommitted files too: the commit
 * holding them is reachable from no ref once this returns (a remote one passes through a
 * para/archived/…/NAME.review ref that is deleted again).
 */
export async function sessionWork(cwd: string, name: string, invocation: Invocation, options: { files: boolean }): Promise<SessionWork> {
  const { repo, state } = await resolveSession(cwd, name, invocation);
  const paths = sessionPaths(repo, name);
  const warnings: string[] = [];
  const base = state.baseCommit;
  if (state.status === 'finished') {
    const head = await branchTip(repo, `refs/heads/${state.branch}`);
    return { repo, state, base, head, tip: head ?? base, uncommitted: 'none', uncaptured: [], warnings };
  }
  const engine = sessionEngine(state);
  const presence = state.container ? (await sessionContainer(engine, repo, paths)).presence : 'missing';
  const running = presence === 'running';
  if (running) {
    const synced = await syncSession(repo, state);
    warnings.push(...synced.warnings);
    if (synced.skipped) warnings.push(`its commits could not be read: ${synced.skipped}`);
  } else if (state.container) {
    warnings.push(`its container is not running, so commits made since para last synced are not shown (${invocation('start')} ${name} --container resumes it)`);
  }
  const head = await branchTip(repo, paths.ref);
  const from = head ?? base;
  if (!options.files) return { repo, state, base, head, tip: from, uncommitted: 'not-asked', uncaptured: [], warnings };
  const identity = await identityOf(repo);
  const message = `para: uncommitted work of session ${name} (for review)`;
  if (state.engine?.remote) {
    if (!running) return { repo, state, base, head, tip: from, uncommitted: 'unreachable', uncaptured: [], warnings };
    const inside = await remoteSnapshot(engine, paths.container, message, false, identity);
    if (!inside.commit) return { repo, state, base, head, tip: from, uncommitted: 'none', uncaptured: inside.ignored, warnings };
    const target = `refs/heads/${archivePrefix(name)}.review`;
    await receiveFromAgent(engine, paths.container, repo, [{ source: 'refs/para-snapshot/wip', oid: inside.commit, target }], [base, from]);
    await git(['update-ref', '-d', target, inside.commit], { cwd: repo.root });
    return { repo, state, base, head, tip: inside.commit, uncommitted: 'included', uncaptured: inside.ignored, warnings };
  }
  // The folder on this machine, read by the host's git as data while nothing can change it.
  if (running) await engine.pauseContainer(paths.container);
  try {
    const snapshot = await snapshotFolder({ repo, folder: paths.worktree, base: from, message, identity, expectGitFile: !state.container });
    if (snapshot.refused) warnings.push(`the folder's files could not be read: ${snapshot.refused}`);
    if (snapshot.plantedGit) warnings.push('the folder holds a .git that para did not make; it was never used');
    return {
      repo,
      state,
      base,
      head,
      tip: snapshot.commit ?? from,
      uncommitted: snapshot.commit ? 'included' : 'none',
      uncaptured: snapshot.uncaptured,
      warnings,
    };
  } finally {
    if (running) await engine.unpauseContainer(paths.container).catch(() => undefined);
  }
}

export interface FileChange {
  path: string;
  /** null for a binary file. */
  added: number | null;
  deleted: number | null;
}

/** git diff between two host commits, with nothing of the agent's run: no external diff, no textconv. */
const DIFF_FLAGS = ['--no-ext-diff', '--no-textconv', '--no-color', '--no-renames'];

export async function changedFiles(repo: Repo, from: string, to: string): Promise<FileChange[]> {
  const out = (await git(['diff', ...DIFF_FLAGS, '--numstat', '-z', from, to, '--'], { cwd: repo.root })).stdout;
  const files: FileChange[] = [];
  for (const record of out.split('\0').filter(Boolean)) {
    const [added, deleted, ...rest] = record.split('\t');
    files.push({ path: rest.join('\t'), added: added === '-' ? null : Number(added), deleted: deleted === '-' ? null : Number(deleted) });
  }
  return files;
}

export async function patchOf(repo: Repo, from: string, to: string, stat: boolean): Promise<string> {
  return (await git(['diff', ...DIFF_FLAGS, ...(stat ? ['--stat=200'] : []), from, to, '--'], { cwd: repo.root })).stdout;
}

export interface CommitInfo {
  oid: string;
  author: string;
  date: string;
  subject: string;
}

/** The commits on para/NAME since the session started, newest first, at most `limit`. */
export async function sessionCommits(repo: Repo, base: string, head: string | null, limit: number): Promise<CommitInfo[]> {
  if (!head) return [];
  const out = (await git(['log', '-z', `--max-count=${limit}`, '--format=%H%x1f%an <%ae>%x1f%aI%x1f%s', `${base}..${head}`, '--'], { cwd: repo.root })).stdout;
  return out
    .split('\0')
    .filter(Boolean)
    .map((record) => {
      const [oid, author, date, subject] = record.replace(/^\n/, '').split('\x1f');
      return { oid, author, date, subject };
    });
}
