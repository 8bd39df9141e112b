// Sessions check: this repository's containers against its session state files. Containers of
// other repositories are never looked at.
import { listContainers, listVolumes, type ContainerInfo, type VolumeInfo } from '../docker.ts';
import { repoLabels } from '../session/container.ts';
import { containerDisplayName, reconcile } from '../session/lifecycle.ts';
import { probeProxy, proxyHealth, recordedEgress } from '../session/egress.ts';
import { sessionPaths, type Repo } from '../session/paths.ts';
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

/** Each active container session's egress: allowlist sessions need a working proxy; open ones are said aloud. */
async function egressFinding(repo: Repo, sessions: SessionState[], containers: ContainerInfo[]): Promise<Finding> {
  const byName = new Map(containers.map((c) => [containerDisplayName(c), c]));
  const active = sessions.filter((s) => s.status === 'active' && s.container);
  if (active.length === 0) return skip('no active container sessions');
  const broken: string[] = [];
  const open: string[] = [];
  let working = 0;
  let none = 0;
  await Promise.all(
    active.map(async (state) => {
      const egress = recordedEgress(state);
      if (egress.mode === 'open') open.push(state.name);
      if (egress.mode === 'none') none += 1;
      if (egress.mode !== 'allowlist') return;
      const paths = sessionPaths(repo, state.name);
      const container = byName.get(paths.container);
      if (!container?.State.Running) return; // a stopped session gets its proxy back when it starts
      const health = proxyHealth(container, byName.get(paths.proxy), byName.get(paths.forwarder));
      if (health !== 'running') {
        broken.push(`${state.name} (proxy ${health})`);
        return;
      }
      const probe = await probeProxy(paths.container);
      if (probe.working) working += 1;
      else broken.push(`${state.name} (${probe.detail})`);
    }),
  );
  const summary = `${working} allowlist session${working === 1 ? '' : 's'} with a working proxy${none ? `, ${none} without network` : ''}`;
  const found: string[] = [];
  const fixes: string[] = [];
  if (broken.length) {
    found.push(`the egress proxy of ${list(broken.sort())} does not work: its agent cannot reach the allowed hosts`);
    fixes.push('start each again to re-create its proxy (scripts/start.ts NAME --container)');
  }
  if (open.length) {
    found.push(`${list(open.sort())} ${open.length === 1 ? 'has' : 'have'} OPEN egress: the agent can reach any address`);
    fixes.push('if that was not meant, finish them and start again without --egress open');
  }
  if (found.length) return warn(`${summary}; ${found.join('; ')}`, fixes.join('; '));
  return ok(summary);
}

interface RepositorySessions {
  repo: Repo;
  sessions: SessionState[];
  problems: string[];
  containers: ContainerInfo[];
  volumes: VolumeInfo[];
}

/** This repository's sessions and labelled resources, read once per doctor run for both checks. */
const repositorySessions = new WeakMap<DoctorContext, Promise<RepositorySessions | undefined>>();

function readSessions(context: DoctorContext): Promise<RepositorySessions | undefined> {
  let found = repositorySessions.get(context);
  if (!found) {
    found = (async () => {
      const repo = await context.repo();
      if (!repo) return undefined;
      const [state, containers, volumes] = await Promise.all([
        listSessions(repo),
        listContainers({ labels: repoLabels(repo.root) }),
        listVolumes({ labels: repoLabels(repo.root) }),
      ]);
      return { repo, sessions: state.sessions, problems: state.problems.map((p) => p.message), containers, volumes };
    })();
    repositorySessions.set(context, found);
  }
  return found;
}

export const sessionChecks: Check<DoctorContext>[] = [
  {
    id: 'sessions',
    needs: ['docker-daemon', 'git'],
    get deadlineMs() {
      return deadlines.dockerMs;
    },
    run: async (context) => {
      const found = await readSessions(context);
      if (!found) return skip('not inside a git repository');
      return sessionsFinding(found.repo, found.sessions, found.containers, found.volumes, found.problems);
    },
  },
  {
    id: 'egress',
    needs: ['docker-daemon', 'git'],
    get deadlineMs() {
      return deadlines.dockerMs;
    },
    run: async (context) => {
      const found = await readSessions(context);
      if (!found) return skip('not inside a git repository');
      return egressFinding(found.repo, found.sessions, found.containers);
    },
  },
];
