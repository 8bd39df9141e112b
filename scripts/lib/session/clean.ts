// Cleaning up: resources labelled for the repository that no session claims, half-started
// sessions whose starter is gone, and records of finished sessions whose branch is gone.
import { idleBrokers, type IdleBroker, removeIdleBroker } from '../broker/broker.ts';
import { config, labels, MANAGED_BY } from '../config.ts';
import { engineFor, type Engine } from '../engine/engine.ts';
import { labelledFor } from '../repo.ts';
import { sessionPaths } from './paths.ts';
import type { Repo } from '../repo.ts';
import { branchTip, deleteBranchAt, pruneHostWorktrees, removeSessionContainer, removeSessionVolume, retireFolder, sessionContainer } from './resources.ts';
import { snapshotFolder, type Snapshot } from './snapshot.ts';
import { DEFAULT_ENGINE } from '../engine/target.ts';
import { deleteSession, listSessions, readSession, sessionEngine, starterAlive, type SessionState, type StateProblem } from './store.ts';

import { containerDisplayName, engineGroups, reconcile, type OrphanContainer } from './list.ts';

export interface CleanPlan {
  containers: OrphanContainer[];
  volumes: string[];
  /** The engine each volume is on (null: the default engine). */
  volumeEngines: Record<string, string | null>;
  staleStarts: string[];
  /** Half-started sessions with files in them: kept (cancel keeps their work). */
  keptStarts: string[];
  /** Finished sessions whose branch is gone (merged and deleted): only their record is left. */
  finished: string[];
  problems: StateProblem[];
  /** Credential brokers no session of any repository uses, per engine (null: the default engine). */
  brokers: Array<IdleBroker & { engine: string | null }>;
  /** This repository's replaced images (untagged: a newer build took the tag while a container still used them). */
  images: Array<{ id: string; engine: string | null; heldLogin: boolean }>;
}

/** Orphans of this repository only: never another repository's sessions, never unlabelled resources. */
export async function planClean(repo: Repo): Promise<CleanPlan> {
  const { sessions, problems } = await listSessions(repo);
  const stale = sessions.filter((s) => s.status === 'starting' && !starterAlive(s));
  const staleNames = new Set(stale.map((s) => s.name));
  const containers: OrphanContainer[] = [];
  const volumes: string[] = [];
  const volumeEngines: Record<string, string | null> = {};
  const brokers: CleanPlan['brokers'] = [];
  const images: CleanPlan['images'] = [];
  for (const group of await engineGroups(repo, sessions)) {
    if (group.unreachable) {
      if (group.states.length)
        problems.push({ file: '', message: `${group.engine.describe()} cannot be reached: its sessions are left as they are (${group.unreachable})` });
      continue;
    }
    const where = group.engine.target.context ?? group.engine.target.host;
    const { unclaimed, unclaimedVolumes } = reconcile(repo, group.states, group.containers, group.volumes);
    containers.push(
      ...unclaimed
        .filter((c) => !staleNames.has(c.Config.Labels?.[labels.session] ?? ''))
        .map((c) => ({
          id: c.Id.slice(0, 12),
          name: containerDisplayName(c),
          session: c.Config.Labels?.[labels.session] ?? null,
          state: c.State.Status,
          engine: where,
        })),
    );
    for (const volume of unclaimedVolumes) {
      volumes.push(volume.Name);
      volumeEngines[volume.Name] = where;
    }
    for (const broker of await idleBrokers(group.engine)) brokers.push({ ...broker, engine: where });
    for (const image of await replacedImages(group.engine, repo)) images.push({ ...image, engine: where });
  }
  const staleStarts: string[] = [];
  const keptStarts: string[] = [];
  for (const state of stale) await judgeStale(repo, state, staleStarts, keptStarts);
  const finished: string[] = [];
  for (const state of sessions) if (state.status === 'finished' && !(await branchTip(repo, sessionPaths(repo, state.name).ref))) finished.push(state.name);
  return { finished, containers, volumes, volumeEngines, staleStarts, keptStarts, problems, brokers, images };
}

/** A half-started session is work when its folder has files or its branch moved; else it is removed. */
async function judgeStale(repo: Repo, state: SessionState, staleStarts: string[], keptStarts: string[]): Promise<void> {
  const engine = sessionEngine(state);
  {
    const paths = sessionPaths(repo, state.name);
    if (state.engine?.remote) {
      // No host folder: the branch tells (the volume, if any, is removed with the session).
      const tip = await branchTip(repo, paths.ref);
      (tip && tip !== state.baseCommit ? keptStarts : staleStarts).push(state.name);
      return;
    }
    // Nothing of it may run while its folder is read.
    const found = state.container ? await sessionContainer(engine, repo, paths) : { presence: 'missing' as const };
    if (found.presence === 'running') await engine.pauseContainer(paths.container);
    let snapshot: Snapshot;
    try {
      snapshot = await snapshotFolder({
        repo,
        folder: paths.worktree,
        base: state.baseCommit,
        message: 'para: probe',
        identity: { name: 'para', email: 'para@localhost' },
        expectGitFile: !state.container,
        probe: true,
      });
    } finally {
      if (found.presence === 'running') await engine.unpauseContainer(paths.container);
    }
    const tip = await branchTip(repo, paths.ref);
    // Files missing from the folder are an unfinished checkout, not work: only additions and changes count.
    if (snapshot.written || snapshot.uncaptured.length > 0 || (tip && tip !== state.baseCommit)) keptStarts.push(state.name);
    else staleStarts.push(state.name);
  }
}

/**
 * This repository's images a newer build replaced (a tools or session image, untagged: a container
 * still used it when the tag moved). A session image holds a copy of the login: it should not linger.
 */
async function replacedImages(engine: Engine, repo: Repo): Promise<Array<{ id: string; heldLogin: boolean }>> {
  const found = await engine.docker(
    [
      'images',
      '--quiet',
      '--no-trunc',
      '--filter',
      'dangling=true',
      '--filter',
      `label=${labels.managedBy}=${MANAGED_BY}`,
      '--filter',
      `label=${labels.repo}=${repo.root}`,
    ],
    { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs },
  );
  const out: Array<{ id: string; heldLogin: boolean }> = [];
  for (const id of new Set(found.stdout.split('\n').filter(Boolean))) {
    const info = await engine.inspectImage(id);
    if (!info || !labelledFor(info.Config.Labels, repo)) continue;
    // Still a container's image (a session not yet finished): it stays.
    const users = await engine.docker(['ps', '--all', '--quiet', '--filter', `ancestor=${id}`], {
      allowFailure: true,
      timeoutMs: config.timeouts.dockerQuickMs,
    });
    if (users.exitCode !== 0 || users.stdout.trim()) continue;
    out.push({ id, heldLogin: Boolean(info.Config.Labels?.[labels.credentialsFrom]) });
  }
  return out;
}

function engineNamed(where: string | null): Engine {
  if (!where) return engineFor(DEFAULT_ENGINE);
  return engineFor(where.includes('://') ? { context: null, host: where, remote: true } : { context: where, host: null, remote: true });
}

export async function applyClean(repo: Repo, plan: CleanPlan, warn: (m: string) => void): Promise<void> {
  for (const container of plan.containers) {
    const engine = engineNamed(container.engine);
    // Look again right before removing: it must still carry this repository's label.
    const info = await engine.inspectContainer(container.id);
    if (info && labelledFor(info.Config.Labels, repo)) await engine.removeContainer(info.Id, { force: true });
  }
  for (const volume of plan.volumes) {
    const engine = engineNamed(plan.volumeEngines[volume] ?? null);
    const info = await engine.inspectVolume(volume);
    if (info && labelledFor(info.Labels, repo)) {
      await engine.removeVolume(volume).catch((error: unknown) => warn(`could not remove the volume ${volume}: ${String(error)}`));
    }
  }
  for (const name of plan.staleStarts) {
    try {
      const state = await readSession(repo, name);
      if (state?.status !== 'starting' || starterAlive(state)) continue;
      const paths = sessionPaths(repo, name);
      const engine = sessionEngine(state);
      await removeSessionContainer(engine, repo, paths);
      await removeSessionVolume(engine, repo, paths);
      await retireFolder(repo, paths, false, null);
      if (!state.container) await pruneHostWorktrees(repo);
      await deleteBranchAt(repo, paths, state.baseCommit);
      await deleteSession(repo, name);
    } catch (error) {
      warn(`could not clean the half-started session ${name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  for (const name of plan.finished) {
    const state = await readSession(repo, name).catch(() => undefined);
    if (state?.status === 'finished' && !(await branchTip(repo, sessionPaths(repo, name).ref))) await deleteSession(repo, name);
  }
  // A replaced image goes once nothing uses it (a session removed above may have been its last user).
  for (const image of plan.images) {
    const engine = engineNamed(image.engine);
    const info = await engine.inspectImage(image.id);
    if (info && labelledFor(info.Config.Labels, repo) && (info.RepoTags ?? []).length === 0)
      await engine.docker(['image', 'rm', image.id], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
  }
  // Last: a session removed above may have been a broker's last user.
  for (const broker of plan.brokers)
    await removeIdleBroker(engineNamed(broker.engine), broker).catch((error: unknown) =>
      warn(`could not remove the credential broker ${broker.name}: ${error instanceof Error ? error.message : String(error)}`),
    );
  await pruneHostWorktrees(repo);
}
