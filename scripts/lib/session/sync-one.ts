// Bringing one session's commits home on demand (para sync), a remote session's files too.
import { ParaError, UsageError } from '../errors.ts';
import { archivePrefix, sessionPaths } from './paths.ts';
import { branchTip } from './resources.ts';
import { receiveFromAgent } from './transport.ts';
import { sessionEngine } from './store.ts';
import { syncSession } from './sync.ts';

import { resolveSession, type Invocation } from './resolve.ts';
import { identityOf, remoteSnapshot } from './capture.ts';

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
  const engine = sessionEngine(state);
  if (state.status === 'finished') throw new ParaError(`session ${name} is finished; its branch ${state.branch} holds its work`, { code: 'session-finished' });
  if (options.files && !state.engine?.remote) {
    throw new UsageError(`session ${name} is on this machine's engine: its files are in ${state.worktree} already`, 'open that folder, or leave out --files');
  }
  const result = await syncSession(repo, state);
  let filesRef: string | null = null;
  let uncaptured: string[] = [];
  if (options.files && state.container) {
    const inside = await remoteSnapshot(engine, state.container, `para: uncommitted work of session ${name}`, false, await identityOf(repo));
    uncaptured = inside.ignored;
    if (inside.commit) {
      const target = `refs/heads/${archivePrefix(name)}.wip`;
      const tip = (await branchTip(repo, sessionPaths(repo, name).ref)) ?? state.baseCommit;
      await receiveFromAgent(engine, state.container, repo, [{ source: 'refs/para-snapshot/wip', oid: inside.commit, target }], [state.baseCommit, tip]);
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
}

// ---- clean ------------------------------------------------------------------------------------
