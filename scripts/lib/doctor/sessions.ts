// Sessions check: this repository's containers against its session state files. Containers of
// other repositories are never looked at.
import { listContainers, listVolumes, type ContainerInfo, type VolumeInfo } from '../docker.ts';
import { repoLabels } from '../session/container.ts';
import { containerDisplayName, reconcile } from '../session/lifecycle.ts';
import type { Repo } from '../session/paths.ts';
import { listSessions, type SessionState } from '../session/store.ts';
import { deadlines, type DoctorContext } from './context.ts';
import { ok, skip, warn, type Check, type Finding } from './runner.ts';

const CLEAN_FIX = 'make clean-sessions (scripts/clean.ts; DRY_RUN=1 shows what it would remove)';
const MISSING_FIX = 'start each again to re-create its container (scripts/start.ts NAME --container), or cancel it (scripts/cancel.ts NAME)';

export interface SessionMismatch {
  /** Containers and volumes labelled for this repository that no live session claims (what clean.ts removes). */
  orphans: string[];
  /** Active sessions whose container no longer exists. */
  missing: string[];
}

/** The orphan rule of list.ts and clean.ts (reconcile), as sorted names. */
export function compareSessions(repo: Repo, sessions: SessionState[], containers: ContainerInfo[], volumes: VolumeInfo[] = []): SessionMismatch {
  const { unclaimed, unclaimedVolumes, missing } = reconcile(repo, sessions, containers, volumes);
  return { orphans: [...unclaimed.map(containerDisplayName), ...unclaimedVolumes.map((v) => v.Name)].sort(), missing: missing.map((s) => s.name).sort() };
}

function list(names: string[]): string {
  return names.length <= 5 ? names.join(', ') : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`;
}

export function sessionsFinding(
  repo: Repo,
  sessions: SessionState[],
  containers: ContainerInfo[],
  volumes: VolumeInfo[] = [],
  problems: string[] = [],
): Finding {
  const { orphans, missing } = compareSessions(repo, sessions, containers, volumes);
  const found: string[] = [...problems];
  const fixes: string[] = [];
  if (orphans.length) {
    found.push(
      `${orphans.length} container${orphans.length === 1 ? '' : 's'} or volume${orphans.length === 1 ? '' : 's'} with no live session (${list(orphans)})`,
    );
    fixes.push(CLEAN_FIX);
  }
  if (missing.length) {
    found.push(`${missing.length} active session${missing.length === 1 ? '' : 's'} whose container is gone (${list(missing)})`);
    fixes.push(MISSING_FIX);
  }
  if (problems.length) fixes.push('move the damaged state files away, then run make clean-sessions');
  if (found.length) return warn(found.join('; '), fixes.join('; '));
  return ok(
    `${sessions.length} session${sessions.length === 1 ? '' : 's'}, ${containers.length} container${containers.length === 1 ? '' : 's'}, nothing left over`,
  );
}

export const sessionChecks: Check<DoctorContext>[] = [
  {
    id: 'sessions',
    needs: ['docker-daemon', 'git'],
    get deadlineMs() {
      return deadlines.dockerMs;
    },
    run: async (context) => {
      const repo = await context.repo();
      if (!repo) return skip('not inside a git repository');
      const [state, containers, volumes] = await Promise.all([
        listSessions(repo),
        listContainers({ labels: repoLabels(repo.root) }),
        listVolumes({ labels: repoLabels(repo.root) }),
      ]);
      return sessionsFinding(
        repo,
        state.sessions,
        containers,
        volumes,
        state.problems.map((p) => p.message),
      );
    },
  },
];
