// Sessions check: this repository's containers against its session state files. Containers of
// other repositories are never looked at.
import { listContainers, type ContainerInfo } from '../docker.ts';
import { ParaError } from '../errors.ts';
import { containerDisplayName, reconcile, repoContainerLabels } from '../session-ops.ts';
import { listSessions, type SessionState } from '../session-store.ts';
import { deadlines, type DoctorContext } from './context.ts';
import { ok, skip, warn, type Check, type Finding } from './runner.ts';

const CLEAN_FIX = 'make clean-sessions (scripts/clean.ts; DRY_RUN=1 shows what it would remove)';

export interface SessionMismatch {
  /** Containers labelled for this repository that no live session claims (what clean.ts removes). */
  orphans: string[];
  /** Active sessions whose container no longer exists. */
  missing: string[];
}

/** The orphan rule of list.ts and clean.ts (reconcile), as sorted names. */
export function compareSessions(sessions: SessionState[], containers: ContainerInfo[]): SessionMismatch {
  const { unclaimed, missing } = reconcile(sessions, containers);
  return { orphans: unclaimed.map(containerDisplayName).sort(), missing: missing.map((s) => s.name).sort() };
}

function list(names: string[]): string {
  return names.length <= 5 ? names.join(', ') : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`;
}

export function sessionsFinding(sessions: SessionState[], containers: ContainerInfo[]): Finding {
  const { orphans, missing } = compareSessions(sessions, containers);
  const problems: string[] = [];
  if (orphans.length) problems.push(`${orphans.length} container${orphans.length === 1 ? '' : 's'} with no live session (${list(orphans)})`);
  if (missing.length) problems.push(`${missing.length} active session${missing.length === 1 ? '' : 's'} whose container is gone (${list(missing)})`);
  if (problems.length) return warn(problems.join('; '), CLEAN_FIX);
  return ok(`${sessions.length} session${sessions.length === 1 ? '' : 's'}, ${containers.length} container${containers.length === 1 ? '' : 's'}, nothing left over`);
}

export const sessionChecks: Check<DoctorContext>[] = [
  {
    id: 'sessions',
    needs: ['docker-daemon', 'git'],
    deadlineMs: deadlines.dockerMs,
    run: async (context) => {
      const repo = await context.repo();
      if (!repo) return skip('not inside a git repository');
      const [sessions, containers] = await Promise.allSettled([
        listSessions(repo.root),
        listContainers({ labels: repoContainerLabels(repo.root) }),
      ]);
      if (sessions.status === 'rejected') {
        const error: unknown = sessions.reason;
        if (error instanceof ParaError && error.code === 'state-damaged') return warn(error.message, error.hint ?? CLEAN_FIX);
        throw error;
      }
      if (containers.status === 'rejected') throw containers.reason;
      return sessionsFinding(sessions.value, containers.value);
    },
  },
];
