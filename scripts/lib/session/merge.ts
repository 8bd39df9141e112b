// Taking a session's work in: its commits are brought to para/NAME, then merged (or squashed) by
// the user's own git into the branch of the checkout the command runs in. Nothing is forced: a
// checkout with changes is refused, a conflict stops as git stops, and the session stays as it was.
import fs from 'fs-extra';
import path from 'node:path';
import { ParaError } from '../errors.ts';
import { git } from '../git.ts';
import { changesInside } from './list.ts';
import { sessionPaths } from './paths.ts';
import { branchTip } from './resources.ts';
import { resolveSession, type Invocation } from './resolve.ts';
import { sessionEngine } from './store.ts';
import { syncSession } from './sync.ts';
import { REPO_ALLOW_FILE } from '../egress/rules.ts';

export interface MergeOptions {
  squash: boolean;
  /** Merge into this branch (switched to first); default: the checkout's current branch. */
  into?: string;
  /** Merge even though the branch changes the repository's egress allowlist. */
  allowlistChange?: boolean;
  /** Merge only if the branch is at this commit (what `para diff` showed): later commits are not merged unseen. */
  expect?: string;
}

export interface MergeResult {
  name: string;
  branch: string;
  into: string;
  /** merged: committed; up-to-date: nothing to take; conflict: stopped with the repository as git left it. */
  outcome: 'merged' | 'up-to-date' | 'conflict';
  squash: boolean;
  /** Commits of the session that were not on the target before. */
  commits: number;
  /** The commit the target branch is at afterwards (null on a conflict). */
  head: string | null;
  conflicts: string[];
  /** What to do next (resolve a conflict; finish the session). */
  next: string[];
  warnings: string[];
}

async function checkoutOf(cwd: string): Promise<string> {
  return (await git(['rev-parse', '--show-toplevel'], { cwd })).stdout;
}

export async function mergeSession(cwd: string, name: string, options: MergeOptions, invocation: Invocation): Promise<MergeResult> {
  const { repo, state } = await resolveSession(cwd, name, invocation);
  const paths = sessionPaths(repo, name);
  const checkout = await checkoutOf(cwd);
  if (checkout === path.join(repo.root, '.para') || checkout.startsWith(path.join(repo.root, '.para') + path.sep)) {
    throw new ParaError(`${checkout} is a session's folder: the merge goes into your own checkout`, {
      code: 'merge-in-session',
      hint: `cd ${repo.root} and run ${invocation('merge')} ${name} again`,
    });
  }
  const warnings: string[] = [];
  if (state.status === 'active' && state.container) {
    const sync = await syncSession(repo, state);
    if (sync.skipped) warnings.push(`the agent's latest commits could not be brought back (${sync.skipped}): merging what para/${name} had`);
    const changed = await changesInside(sessionEngine(state), state, repo, sync.skipped ? 'exited' : 'running').catch(() => null);
    if (changed) warnings.push(`session ${name} has uncommitted files: they are not part of this merge (${invocation('finish')} ${name} commits them)`);
  }
  const tip = await branchTip(repo, paths.ref);
  if (!tip) throw new ParaError(`the branch ${paths.branch} does not exist`, { code: 'no-branch', hint: `list the sessions: ${invocation('list')}` });
  if (options.expect !== undefined && !(/^[0-9a-f]{7,64}$/.test(options.expect) && tip.startsWith(options.expect))) {
    throw new ParaError(`${paths.branch} is at ${tip.slice(0, 12)}, not ${options.expect}: the agent committed since you looked`, {
      code: 'branch-moved',
      hint: `look again (${invocation('diff')} ${name}), then merge with the --expect it prints`,
    });
  }
  const dirty = (await git(['status', '--porcelain', '--untracked-files=no'], { cwd: checkout })).stdout;
  if (dirty) {
    throw new ParaError(`${checkout} has changes that are not committed: para merges only into a clean checkout`, {
      code: 'checkout-dirty',
      hint: 'commit or stash them (git stash), then merge again',
    });
  }
  if (await git(['rev-parse', '-q', '--verify', 'MERGE_HEAD'], { cwd: checkout, allowFailure: true }).then((r) => r.exitCode === 0)) {
    throw new ParaError(`${checkout} is in the middle of a merge`, {
      code: 'merge-in-progress',
      hint: 'finish it (git commit) or abort it (git merge --abort) first',
    });
  }
  const current = (await git(['symbolic-ref', '-q', '--short', 'HEAD'], { cwd: checkout, allowFailure: true })).stdout;
  const into = options.into ?? current;
  if (!into) {
    throw new ParaError(`${checkout} is not on a branch (detached HEAD)`, {
      code: 'detached-head',
      hint: `switch to the branch to merge into (git switch main), or name it: ${invocation('merge')} ${name} --into main`,
    });
  }
  if (into.startsWith('para/') || into === paths.branch) {
    throw new ParaError(`para merges a session into your own branch, not into ${into}`, { code: 'bad-target', hint: `name your branch: --into main` });
  }
  if (into !== current) {
    if ((await git(['check-ref-format', '--branch', into], { cwd: checkout, allowFailure: true })).exitCode !== 0 || into.startsWith('-')) {
      throw new ParaError(`${JSON.stringify(into)} is not a branch name`, { code: 'bad-target', hint: 'name an existing branch: --into main' });
    }
    if (!(await branchTip(repo, `refs/heads/${into}`))) {
      throw new ParaError(`there is no branch ${into}`, { code: 'bad-target', hint: `list them: git branch` });
    }
  }
  // What this merge would write into para's own folders (against the merge base with the target, as git merges) is refused; a wider team allowlist is said aloud.
  const touched = (
    await git(['diff', '--name-only', '--no-renames', `refs/heads/${into}...${tip}`, '--', '.para'], { cwd: checkout, allowFailure: true })
  ).stdout
    .split('\n')
    .filter(Boolean);
  if (touched.some((file) => file !== REPO_ALLOW_FILE)) {
    throw new ParaError(`${paths.branch} adds files under .para/, where para keeps every session's files; para does not merge it`, {
      code: 'merge-touches-para',
      hint: `look at them (git diff ${into}...${paths.branch} -- .para), remove them from the branch, then merge again`,
    });
  }
  if (touched.includes(REPO_ALLOW_FILE)) {
    if (!options.allowlistChange) {
      throw new ParaError(`${paths.branch} changes ${REPO_ALLOW_FILE}: merging it would change which hosts every session may reach`, {
        code: 'merge-changes-allowlist',
        hint: `look at it (git diff ${into}...${paths.branch} -- ${REPO_ALLOW_FILE}); to merge it anyway: ${invocation('merge')} ${name} --allowlist-change`,
      });
    }
    warnings.push(`${paths.branch} changes ${REPO_ALLOW_FILE}: which hosts every session may reach changes with this merge`);
  }
  if (into !== current) {
    const switched = await git(['switch', '--quiet', into], { cwd: checkout, allowFailure: true });
    if (switched.exitCode !== 0)
      throw new ParaError(`git could not switch to ${into}: ${switched.stderr}`, { code: 'switch-failed', hint: 'switch yourself, then merge again' });
    warnings.push(`switched ${checkout} to ${into}`);
  }
  const commits = Number((await git(['rev-list', '--count', `HEAD..${tip}`], { cwd: checkout })).stdout);
  const finishHint = `${invocation('finish')} ${name}`;
  if (commits === 0) {
    return {
      name,
      branch: paths.branch,
      into,
      outcome: 'up-to-date',
      squash: options.squash,
      commits,
      head: null,
      conflicts: [],
      next: [finishHint],
      warnings,
    };
  }
  // The user's git, config and hooks: this is their merge, of a commit named by its id (no ref the agent could have moved since).
  const merged = await git(['merge', '--no-edit', ...(options.squash ? ['--squash'] : ['-m', `Merge session ${name} (${paths.branch})`]), tip], {
    cwd: checkout,
    allowFailure: true,
    timeoutMs: 10 * 60_000,
  });
  const conflicts = (await git(['diff', '--name-only', '--diff-filter=U', '-z'], { cwd: checkout, allowFailure: true })).stdout.split('\0').filter(Boolean);
  if (merged.exitCode !== 0 && conflicts.length) {
    const abort = options.squash ? 'git reset --merge' : 'git merge --abort';
    return {
      name,
      branch: paths.branch,
      into,
      outcome: 'conflict',
      squash: options.squash,
      commits,
      head: null,
      conflicts,
      next: [`resolve the conflicts, git add the files, then git commit`, `or give up the merge: ${abort}`, `then: ${finishHint}`],
      warnings,
    };
  }
  if (merged.exitCode !== 0) {
    throw new ParaError(`git merge did not merge ${paths.branch}: ${merged.stderr || merged.stdout}`, {
      code: 'merge-failed',
      hint: 'do what git says, then merge again',
    });
  }
  if (options.squash) {
    // The subject names the session; git's own squash message (the commits it holds) follows.
    const squashFile = (await git(['rev-parse', '--path-format=absolute', '--git-path', 'SQUASH_MSG'], { cwd: checkout })).stdout;
    const listed = await fs.readFile(squashFile, 'utf8').catch(() => '');
    const message = `Session ${name} (${paths.branch}): ${commits} commit${commits === 1 ? '' : 's'} squashed\n\n${listed}`;
    const committed = await git(['commit', '--quiet', '--file=-'], { cwd: checkout, allowFailure: true, input: message });
    if (committed.exitCode !== 0) {
      throw new ParaError(`the squashed changes are staged, but git commit failed: ${committed.stderr || committed.stdout}`, {
        code: 'commit-failed',
        hint: 'commit them yourself (git commit), or drop them (git reset --merge)',
      });
    }
  }
  const head = (await git(['rev-parse', 'HEAD'], { cwd: checkout })).stdout;
  return { name, branch: paths.branch, into, outcome: 'merged', squash: options.squash, commits, head, conflicts: [], next: [finishHint], warnings };
}
