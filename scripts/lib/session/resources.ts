// The one module that creates and removes a session's resources: its branch, worktree folder,
// volume, container and state. Start's rollback, resume, finish, cancel and clean all come here;
// removals check labels and names first and never touch what is not this session's.
import fs from 'fs-extra';
import path from 'node:path';
import { ParaError } from '../errors.ts';
import { git } from '../git.ts';
import { imageUserIds } from '../image/build.ts';
import { labelledFor } from '../repo.ts';
import { runContainer, type ContainerSpec } from './container.ts';
import { removeEgress } from './egress.ts';
import { keptDir, paraDir, worktreesDir, type SessionPaths } from './paths.ts';
import type { Repo } from '../repo.ts';
import type { Engine } from '../engine/engine.ts';

/** Undo list for one start: each step pushes its inverse, run in reverse on failure. */
export class Rollback {
  private steps: Array<{ what: string; undo: () => Promise<unknown> }> = [];
  add(what: string, undo: () => Promise<unknown>): void {
    this.steps.push({ what, undo });
  }
  async run(warn: (m: string) => void): Promise<void> {
    for (const step of this.steps.reverse()) {
      try {
        await step.undo();
      } catch (error) {
        warn(`rollback: could not undo ${step.what}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
    this.steps = [];
  }
}

/** What .para/.gitignore holds: para's folders and itself ignored; the team's files (allowed-hosts, image/) committable. */
export const PARA_GITIGNORE = '*\n!allowed-hosts\n!image/\n!image/**\n';
/** What earlier versions wrote, brought up to date when found. */
const OLDER_GITIGNORES = ['*\n', '*\n!allowed-hosts\n'];

/**
 * Creates <repo>/.para with a .gitignore that ignores everything there (itself included, so no
 * user file is touched) except the team's committed files. An older para's "*" is brought up to date.
 */
export async function ensureParaDir(repo: Repo): Promise<void> {
  await fs.mkdir(worktreesDir(repo), { recursive: true });
  const ignore = path.join(paraDir(repo), '.gitignore');
  const found = await fs.readFile(ignore, 'utf8').catch(() => undefined);
  if (found === undefined || OLDER_GITIGNORES.includes(found)) await fs.writeFile(ignore, PARA_GITIGNORE);
}

/** Creates para/NAME at `commit`; fails if the branch exists. Undone only while it is still there. */
export async function createBranch(repo: Repo, paths: SessionPaths, commit: string, rollback: Rollback): Promise<void> {
  const zero = '0'.repeat(commit.length);
  const made = await git(['update-ref', '-m', 'para: session created', paths.ref, commit, zero], { cwd: repo.root, allowFailure: true });
  if (made.exitCode !== 0) {
    if (/already exists|cannot lock ref/i.test(made.stderr)) {
      throw new ParaError(`the branch ${paths.branch} already exists and does not belong to a para session`, {
        code: 'branch-exists',
        hint: `choose another name, or rename that branch: git branch -m ${paths.branch} <new-name>`,
      });
    }
    throw new ParaError(`could not create the branch ${paths.branch}: ${made.stderr}`, { code: 'git-failed' });
  }
  rollback.add(`the branch ${paths.branch}`, () => git(['update-ref', '-d', paths.ref, commit], { cwd: repo.root, allowFailure: true }));
}

export async function branchTip(repo: Repo, ref: string): Promise<string | null> {
  const result = await git(['rev-parse', '-q', '--verify', `${ref}^{commit}`], { cwd: repo.root, allowFailure: true });
  return result.exitCode === 0 ? result.stdout.trim() : null;
}

/**
 * Creates the worktree folder, refusing anything already at that path (left alone). On a root
 * host it is handed to the agent's unprivileged UID, so the agent can write in it.
 */
export async function createFolder(paths: SessionPaths, rollback: Rollback, forAgent: boolean): Promise<void> {
  try {
    await fs.mkdir(paths.worktree, { mode: 0o755 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new FolderExists(paths.worktree);
    throw error;
  }
  rollback.add(`the folder ${paths.worktree}`, () => fs.rm(paths.worktree, { recursive: true, force: true }));
  if (forAgent && process.getuid?.() === 0) {
    const ids = imageUserIds();
    await fs.chown(paths.worktree, ids.uid, ids.gid);
  }
}

export class FolderExists extends Error {
  constructor(readonly folder: string) {
    super(`${folder} already exists`);
  }
}

export async function createSessionContainer(engine: Engine, spec: ContainerSpec, rollback: Rollback): Promise<void> {
  rollback.add(`the container ${spec.paths.container}`, () => removeSessionContainer(engine, spec.repo, spec.paths));
  await runContainer(engine, spec);
}

function belongs(found: Record<string, string> | null | undefined, repo: Repo, paths: SessionPaths): boolean {
  return labelledFor(found, repo, paths.name);
}

export type ContainerPresence = 'running' | 'stopped' | 'missing';

/** The session's container, only if its labels name this repository and session. */
export async function sessionContainer(
  engine: Engine,
  repo: Repo,
  paths: SessionPaths,
): Promise<{ presence: ContainerPresence; paused?: boolean; startedAt?: string; image?: string }> {
  const info = await engine.inspectContainer(paths.container);
  if (!info) return { presence: 'missing' };
  if (!belongs(info.Config.Labels, repo, paths)) {
    throw new ForeignResource(`the container ${paths.container} is not labelled as session ${paths.name} of ${repo.root}; para leaves it alone`);
  }
  return {
    presence: info.State.Running ? 'running' : 'stopped',
    paused: Boolean(info.State.Paused),
    startedAt: info.State.StartedAt,
    image: info.Config.Image,
  };
}

export class ForeignResource extends Error {}

export async function startSessionContainer(engine: Engine, repo: Repo, paths: SessionPaths): Promise<void> {
  const found = await sessionContainer(engine, repo, paths);
  if (found.presence === 'stopped') await engine.startContainer(paths.container);
}

/** Removes the container if it is this session's, with its egress proxy and forwarder; false when there was none. */
export async function removeSessionContainer(engine: Engine, repo: Repo, paths: SessionPaths): Promise<boolean> {
  await removeEgress(engine, repo, paths);
  const info = await engine.inspectContainer(paths.container);
  if (!info) return false;
  if (!belongs(info.Config.Labels, repo, paths))
    throw new ForeignResource(`the container ${paths.container} is not labelled as session ${paths.name} of ${repo.root}; para leaves it alone`);
  return engine.removeContainer(info.Id, { force: true });
}

export async function sessionVolumeExists(engine: Engine, repo: Repo, paths: SessionPaths): Promise<boolean> {
  const info = await engine.inspectVolume(paths.volume);
  return Boolean(info && belongs(info.Labels, repo, paths));
}

export async function removeSessionVolume(engine: Engine, repo: Repo, paths: SessionPaths): Promise<boolean> {
  const info = await engine.inspectVolume(paths.volume);
  if (!info) return false;
  if (!belongs(info.Labels, repo, paths))
    throw new ForeignResource(`the volume ${paths.volume} is not labelled as session ${paths.name} of ${repo.root}; para leaves it alone`);
  return engine.removeVolume(paths.volume);
}

/**
 * Removes the worktree folder once its files are safe, or, when it still holds files para could
 * not commit (ignored files, nested repositories), moves it whole to .para/kept/ and says where.
 * Never follows a symlink: the folder itself is checked, and rm does not descend into links.
 */
export async function retireFolder(
  repo: Repo,
  paths: SessionPaths,
  keepFiles: boolean,
  repositoryTar: string | null,
  now = new Date(),
): Promise<string | null> {
  let keep = keepFiles;
  const stat = await fs.lstat(paths.worktree).catch(() => undefined);
  if (stat && !stat.isDirectory()) throw new Error(`${paths.worktree} is not a folder; para leaves it alone`);
  if (!keep && !repositoryTar) {
    if (!stat) return null;
    try {
      await fs.rm(paths.worktree, { recursive: true, force: true });
      return null;
    } catch {
      // A tree node cannot remove (too deep, say) is kept whole rather than half-deleted.
      keep = true;
    }
  }
  // A folder of para's own; the agent's files go inside it whole, never mixed with para's files.
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const target = path.join(keptDir(repo), `${paths.name}-${stamp}`);
  await fs.mkdir(target, { recursive: true, mode: 0o700 });
  if (stat && (await fs.pathExists(paths.worktree))) {
    if (keep) await fs.rename(paths.worktree, path.join(target, 'files'));
    else await fs.rm(paths.worktree, { recursive: true, force: true }).catch(() => fs.rename(paths.worktree, path.join(target, 'files')));
  }
  if (repositoryTar) {
    await fs.move(repositoryTar, path.join(target, 'agent-repository.tar'));
    await fs.rm(path.dirname(repositoryTar), { recursive: true, force: true });
  }
  return target;
}

/** Host-side git worktree for a session without a container (the agent runs on the host there). */
export async function addHostWorktree(repo: Repo, paths: SessionPaths, rollback: Rollback): Promise<void> {
  await git(['worktree', 'add', '--quiet', paths.worktree, paths.branch], { cwd: repo.root });
  rollback.add(`the worktree ${paths.worktree}`, () => git(['worktree', 'remove', '--force', paths.worktree], { cwd: repo.root, allowFailure: true }));
}

/** Forgets worktree records whose folder is gone (sessions without a container). */
export async function pruneHostWorktrees(repo: Repo): Promise<void> {
  await git(['worktree', 'prune'], { cwd: repo.root, allowFailure: true });
}

/** Deletes para/NAME only if it still points where para left it (a half-made start). */
export async function deleteBranchAt(repo: Repo, paths: SessionPaths, commit: string): Promise<boolean> {
  const result = await git(['update-ref', '-d', paths.ref, commit], { cwd: repo.root, allowFailure: true });
  return result.exitCode === 0;
}
