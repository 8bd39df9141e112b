// Cancelling a session: its work is captured as for a finish, then its branch is archived under
// para/archived/<time>/NAME and its record removed.
import { git } from '../git.ts';
import { archivePrefix, sessionPaths } from './paths.ts';
import { branchTip } from './resources.ts';
import { deleteSession, starterAlive } from './store.ts';

import { resolveSession, type Invocation } from './resolve.ts';
import { captureWork, checkFinishable, retire, savedRefs, type Captured } from './capture.ts';

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
}
