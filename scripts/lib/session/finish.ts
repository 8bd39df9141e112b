// Finishing a session: its work is captured on para/NAME, its container, volume and folder go,
// and its record stays (finished) until its branch is merged and deleted.
import { git } from '../git.ts';
import type { Repo } from '../repo.ts';
import { settleJob } from './job.ts';
import { branchTip } from './resources.ts';
import { archivePrefix, sessionPaths } from './paths.ts';
import { sessionEngine, writeSession, type SessionState } from './store.ts';

import { resolveSession, type Invocation } from './resolve.ts';
import { captureWork, checkFinishable, retire, savedRefs } from './capture.ts';

export interface FinishResult {
  name: string;
  branch: string;
  committed: boolean;
  wipRef: string | null;
  savedRefs: string[];
  keptFolder: string | null;
  uncaptured: string[];
  baseBranch: string | null;
  /** merged: the branch is already in the one the session started from; empty: it has no commits since the start. */
  mergeState: 'to-merge' | 'merged' | 'empty';
  mergeHint: string;
  warnings: string[];
}

/** The branch's tip is already in the branch the session started from (para merge ran before finish). */
async function alreadyMerged(repo: Repo, ref: string, base: string | null): Promise<boolean> {
  if (!base) return false;
  const result = await git(['merge-base', '--is-ancestor', ref, `refs/heads/${base}`], { cwd: repo.root, allowFailure: true });
  return result.exitCode === 0;
}

async function finalJob(state: SessionState): Promise<SessionState['job']> {
  const engine = sessionEngine(state);
  if (!state.job || !state.container) return state.job;
  return (await settleJob(engine, state.container, state.job).catch(() => undefined))?.job ?? state.job;
}

export async function finishSession(cwd: string, name: string, message: string | undefined, invocation: Invocation): Promise<FinishResult> {
  const resolved = await resolveSession(cwd, name, invocation);
  const { repo } = resolved;
  checkFinishable(resolved.state, invocation);
  const state = { ...resolved.state, job: await finalJob(resolved.state) };
  const paths = sessionPaths(repo, name);
  const captured = await captureWork(repo, state, archivePrefix(name), message, invocation);
  const kept = await retire(repo, state, captured);
  await writeSession(repo, { ...state, status: 'finished', finishedAt: new Date().toISOString(), pid: undefined });
  const base = state.baseBranch;
  const tip = await branchTip(repo, paths.ref);
  const mergeState = tip === state.baseCommit ? 'empty' : (await alreadyMerged(repo, paths.ref, base)) ? 'merged' : 'to-merge';
  return {
    name,
    branch: state.branch,
    committed: captured.wipRef === paths.branch,
    wipRef: captured.wipRef,
    savedRefs: savedRefs(captured, paths.ref),
    keptFolder: kept,
    uncaptured: captured.snapshot.uncaptured,
    baseBranch: base,
    mergeState,
    mergeHint:
      mergeState === 'merged'
        ? `git branch -d ${state.branch} (it is already in ${base}) once you no longer need it`
        : mergeState === 'empty'
          ? `nothing: ${state.branch} has no commits since the session started`
          : base
            ? `${invocation('merge')} ${name} (or: git switch ${base} && git merge ${state.branch})`
            : `git merge ${state.branch}`,
    warnings: captured.warnings,
  };
}
