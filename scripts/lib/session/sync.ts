// When para/NAME moves on the host: sync brings the agent's commits on its branch back (list,
// logs, resume, finish, cancel and `para sync` call it); finish and cancel also keep the agent's
// other branches, tags and a detached HEAD under an archive prefix.
import fs from 'fs-extra';
import path from 'node:path';
import { sessionPaths, type Repo } from './paths.ts';
import { branchTip, sessionContainer } from './resources.ts';
import type { SessionState } from './store.ts';
import { readAgentRefs, receiveFromAgent, type AgentRefs, type RefUpdate } from './transport.ts';

export interface SyncResult {
  /** Host refs that moved. */
  moved: string[];
  /** Why nothing could be read from the container, when so. */
  skipped: string | null;
  /** The folder holds a .git the agent made (para never uses it; opening it with git runs its config). */
  plantedGit: boolean;
  agent: AgentRefs | null;
}

export interface SyncOptions {
  /** Also keep every other ref of the agent's under this prefix (e.g. para/archived/<time>/NAME). */
  keepOthersUnder?: string;
}

/** A ref name git accepts, checked before it is ever handed to update-ref. */
export function validRefName(ref: string): boolean {
  if (!/^refs\/heads\/[A-Za-z0-9._\/+@-]+$/.test(ref)) return false;
  if (ref.includes('..') || ref.includes('//') || ref.includes('@{') || ref.endsWith('/') || ref.endsWith('.')) return false;
  return ref.split('/').every((part) => part.length > 0 && !part.startsWith('.') && !part.endsWith('.lock'));
}

export async function plantedGit(worktree: string): Promise<boolean> {
  return Boolean(await fs.lstat(path.join(worktree, '.git')).catch(() => undefined));
}

export async function syncSession(repo: Repo, state: SessionState, options: SyncOptions = {}): Promise<SyncResult> {
  const paths = sessionPaths(repo, state.name);
  if (!state.container) return { moved: [], skipped: null, plantedGit: false, agent: null };
  const planted = await plantedGit(paths.worktree);
  const found = await sessionContainer(repo, paths);
  if (found.presence !== 'running') {
    return { moved: [], skipped: found.presence === 'missing' ? 'its container is gone' : 'its container is stopped', plantedGit: planted, agent: null };
  }
  const agent = await readAgentRefs(paths.container);
  const updates: RefUpdate[] = [];
  const main = agent.refs.get(paths.ref);
  if (main) updates.push({ source: paths.ref, oid: main, target: paths.ref });
  if (options.keepOthersUnder) {
    const prefix = `refs/heads/${options.keepOthersUnder}`;
    for (const [ref, oid] of agent.refs) {
      if (ref === paths.ref) continue;
      const target = ref.startsWith('refs/heads/') ? `${prefix}.branches/${ref.slice('refs/heads/'.length)}` : `${prefix}.tags/${ref.slice('refs/tags/'.length)}`;
      if (validRefName(target)) updates.push({ source: ref, oid, target });
    }
    if (agent.head && !agent.headRef && ![...agent.refs.values()].includes(agent.head)) {
      updates.push({ source: 'HEAD', oid: agent.head, target: `${prefix}.head` });
    }
  }
  const exclude = [state.baseCommit];
  const tip = await branchTip(repo, paths.ref);
  if (tip && tip !== state.baseCommit) exclude.push(tip);
  const moved = await receiveFromAgent(paths.container, repo, updates, exclude);
  return { moved, skipped: null, plantedGit: planted, agent };
}
