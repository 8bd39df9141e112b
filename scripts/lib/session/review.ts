// Reading a session's work on the host (para diff, para log): its commits are brought to para/NAME
// first, and its uncommitted files are committed as data (the host's git on the folder for a
// session on this machine, the agent's git inside its container for a remote one), never checked
// out. Everything shown was written by the agent: the caller escapes it before a terminal sees it.
import fs from 'fs-extra';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { withTempDir, onInterrupt } from '../cleanup.ts';
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
  // A branch built on host commits newer than its start (the agent sees them in the objects it
  // borrows) can change, in a merge, a file this diff (against the start) shows unchanged: a
  // revert of one of those commits. Such files are named.
  if (head && head !== base) {
    const onTop = (await git(['merge-base', 'HEAD', head], { cwd: repo.root, allowFailure: true })).stdout;
    if (onTop && onTop !== base && onTop !== head) {
      const names = async (from: string) =>
        new Set(
          (await git(['diff', '--name-only', '--no-renames', '-z', from, head], { cwd: repo.root, allowFailure: true })).stdout.split('\0').filter(Boolean),
        );
      const [merged, shown] = await Promise.all([names(onTop), names(base)]);
      const hidden = [...merged].filter((file) => !shown.has(file));
      if (hidden.length) {
        warnings.push(
          `a merge of ${paths.branch} would also change ${hidden
            .slice(0, 10)
            .map((f) => JSON.stringify(f))
            .join(
              ', ',
            )}, which this diff (against the session's start) shows unchanged: the branch builds on commits made since; see git diff HEAD...${paths.branch}`,
        );
      }
    }
  }
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
  // Interrupted while paused (a timeout of the caller, Ctrl-C), the session must not stay frozen.
  const stop = running ? onInterrupt(() => engine.unpauseContainer(paths.container)) : () => undefined;
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
    stop();
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
const TIMEOUT_MS = 5 * 60_000;

/**
 * git on the host's objects only: its git folder, an empty private work tree and that as the
 * working directory, so nothing in a session's folder (which lies inside the checkout, where a
 * .gitattributes there would be read for its paths, a FIFO one blocking git) is ever opened.
 */
async function objectsGit<T>(repo: Repo, run: (gitArgs: (args: string[]) => string[], dir: string) => Promise<T>): Promise<T> {
  return withTempDir('para-review-', async (dir) => {
    const empty = path.join(dir, 'tree');
    await fs.mkdir(empty);
    return run((args) => [`--git-dir=${repo.commonDir}`, `--work-tree=${empty}`, ...args], empty);
  });
}

export async function changedFiles(repo: Repo, from: string, to: string): Promise<FileChange[]> {
  const out = await objectsGit(
    repo,
    async (g, cwd) => (await git(g(['diff', ...DIFF_FLAGS, '--numstat', '-z', from, to, '--']), { cwd, timeoutMs: TIMEOUT_MS })).stdout,
  );
  const files: FileChange[] = [];
  for (const record of out.split('\0').filter(Boolean)) {
    const [added, deleted, ...rest] = record.split('\t');
    files.push({ path: rest.join('\t'), added: added === '-' ? null : Number(added), deleted: deleted === '-' ? null : Number(deleted) });
  }
  return files.slice(0, 10_000);
}

/** The patch (or the stat), written to a private file and handed to `read`: any size is bounded by what `read` takes. */
export async function withPatch<T>(repo: Repo, from: string, to: string, stat: boolean, read: (file: string) => Promise<T>): Promise<T> {
  return objectsGit(repo, async (g, cwd) => {
    const file = path.join(path.dirname(cwd), 'patch');
    await git(g(['diff', ...DIFF_FLAGS, ...(stat ? ['--stat=200'] : []), from, to, '--']), { cwd, timeoutMs: TIMEOUT_MS, stdoutFile: file });
    return read(file);
  });
}

/** At most `max` bytes of the patch, and whether it was cut. */
export async function patchText(repo: Repo, from: string, to: string, stat: boolean, max: number): Promise<{ patch: string; truncated: boolean }> {
  return withPatch(repo, from, to, stat, async (file) => {
    const size = (await fs.stat(file)).size;
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(Math.min(size, max));
      await handle.read(buffer, 0, buffer.length, 0);
      return { patch: buffer.toString('utf8').replace(/\n$/, ''), truncated: size > max };
    } finally {
      await handle.close();
    }
  });
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
  // Fields and records end in NUL, which no commit can hold: an author cannot forge a field.
  const out = await objectsGit(
    repo,
    async (g, cwd) =>
      (
        await git(g(['log', '-z', `--max-count=${limit}`, '--format=%H%x00%an <%ae>%x00%aI%x00%s%x00', `${base}..${head}`, '--']), {
          cwd,
          timeoutMs: TIMEOUT_MS,
        })
      ).stdout,
  );
  const fields = out.split('\0');
  const commits: CommitInfo[] = [];
  for (let i = 0; i + 3 < fields.length; i += 5) {
    const [oid, author, date, subject] = fields.slice(i, i + 4);
    if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(oid.replace(/^\n/, '')) || !/^\d{4}-\d{2}-\d{2}T[\d:]{8}([+-]\d{2}:\d{2}|Z)$/.test(date)) break;
    commits.push({ oid: oid.replace(/^\n/, ''), author, date, subject });
  }
  return commits;
}
