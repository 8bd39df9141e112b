// When para/NAME moves on the host: sync brings the agent's commits on its branch back (list,
// logs, resume, finish, cancel and `para sync` call it); finish and cancel also keep the agent's
// other branches, tags and a detached HEAD under an archive prefix.
import { REPO_ALLOW_FILE } from '../egress/rules.ts';
import fs from 'fs-extra';
import path from 'node:path';
import { sessionPaths } from './paths.ts';
import type { Repo } from '../repo.ts';
import { git } from '../git.ts';
import { branchTip, sessionContainer } from './resources.ts';
import { sessionEngine, type SessionState } from './store.ts';
import { isValidRefName, readAgentRefs, receiveFromAgent, type AgentRefs, type RefUpdate } from './transport.ts';

export interface SyncResult {
  /** Host refs that moved. */
  moved: string[];
  /** Why nothing could be read from the container, when so. */
  skipped: string | null;
  /** The folder holds a .git the agent made (para never uses it; opening it with git runs its config). */
  plantedGit: boolean;
  agent: AgentRefs | null;
  /** Agent refs that could not be kept (not a commit, or a name para cannot store). */
  notKept: string[];
  warnings: string[];
}

export interface SyncOptions {
  /** Also keep every other ref of the agent's under this prefix (e.g. para/archived/<time>/NAME). */
  keepOthersUnder?: string;
}

/** More refs than this (besides the session branch) are not made into branches: the repository is kept as a tar. */
const MAX_KEPT_REFS = 200;

/** Where finish and cancel keep an agent ref other than its session branch. */
function keptName(prefix: string, ref: string): string {
  if (ref === 'refs/stash') return `${prefix}.stash`;
  const [, kind, rest] = /^refs\/(heads|tags|notes)\/(.*)$/.exec(ref) ?? [];
  return `${prefix}.${kind === 'heads' ? 'branches' : kind}/${rest}`;
}

export async function plantedGit(worktree: string): Promise<boolean> {
  return Boolean(await fs.lstat(path.join(worktree, '.git')).catch(() => undefined));
}

export async function syncSession(repo: Repo, state: SessionState, options: SyncOptions = {}): Promise<SyncResult> {
  const paths = sessionPaths(repo, state.name);
  if (!state.container) return { moved: [], skipped: null, plantedGit: false, agent: null, notKept: [], warnings: [] };
  const planted = await plantedGit(paths.worktree);
  const engine = sessionEngine(state);
  const found = await sessionContainer(engine, repo, paths);
  if (found.presence !== 'running') {
    return {
      moved: [],
      skipped: found.presence === 'missing' ? 'its container is gone' : 'its container is stopped',
      plantedGit: planted,
      agent: null,
      notKept: [],
      warnings: [],
    };
  }
  const agent = await readAgentRefs(engine, paths.container);
  const updates: RefUpdate[] = [];
  const main = agent.refs.get(paths.ref);
  if (main) updates.push({ source: paths.ref, oid: main, target: paths.ref });
  const notKept = [...agent.skipped];
  const others = [...agent.refs.keys()].filter((ref) => ref !== paths.ref);
  if (options.keepOthersUnder && others.length > MAX_KEPT_REFS) {
    // So many refs would flood the repository: the agent's repository is kept whole instead.
    notKept.push(...others);
  } else if (options.keepOthersUnder) {
    const prefix = `refs/heads/${options.keepOthersUnder}`;
    for (const [ref, oid] of agent.refs) {
      if (ref === paths.ref) continue;
      const target = keptName(prefix, ref);
      if (isValidRefName(target)) updates.push({ source: ref, oid, target });
      else notKept.push(ref);
    }
    if (agent.head && !agent.headRef && ![...agent.refs.values()].includes(agent.head)) {
      updates.push({ source: 'HEAD', oid: agent.head, target: `${prefix}.head` });
    }
  }
  const exclude = [state.baseCommit];
  const tip = await branchTip(repo, paths.ref);
  if (tip && tip !== state.baseCommit) exclude.push(tip);
  const moved = await receiveFromAgent(engine, paths.container, repo, updates, exclude);
  const warnings: string[] = [];
  if (notKept.length) {
    const shown = notKept
      .slice(0, 10)
      .map((r) => JSON.stringify(r))
      .join(', ');
    warnings.push(
      `${notKept.length} agent ref${notKept.length === 1 ? '' : 's'} kept only in the agent's repository (not a commit, or too many to make into branches): ${shown}${notKept.length > 10 ? `, and ${notKept.length - 10} more` : ''}`,
    );
  }
  warnings.push(...(await branchWarnings(repo, state)));
  return { moved, skipped: null, plantedGit: planted, agent, notKept, warnings };
}

/** What merging the session branch as it is on the host would do that a person must know first. */
export async function branchWarnings(repo: Repo, state: SessionState, tip?: string | null): Promise<string[]> {
  const paths = sessionPaths(repo, state.name);
  const warnings: string[] = [];
  // Merging a branch that changes .para/ would write into para's own folders (other sessions'
  // files), or widen the team's egress allowlist: what the agent changed there is said aloud.
  const newTip = tip === undefined ? await branchTip(repo, paths.ref) : tip;
  if (newTip && newTip !== state.baseCommit) {
    // What merging it into the checkout would change (against their merge base, not the session's start).
    const changed = (await git(['diff', '--name-only', '--no-renames', `HEAD...${newTip}`, '--', '.para'], { cwd: repo.root, allowFailure: true })).stdout
      .split('\n')
      .filter(Boolean);
    if (changed.includes(REPO_ALLOW_FILE)) {
      warnings.push(`${paths.branch} changes ${REPO_ALLOW_FILE}: merging it would change which hosts every session may reach; review that file first`);
    }
    if (changed.some((file) => file !== REPO_ALLOW_FILE)) {
      warnings.push(
        `${paths.branch} adds files under .para/: merging it would write into para's folders (other sessions' files); remove them from the branch first`,
      );
    }
  }
  return warnings;
}
