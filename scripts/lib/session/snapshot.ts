// The worktree folder's files, committed as data by the host's git: a private git folder of
// para's own (no config, hooks, attributes or fsmonitor of anyone else's), a temporary index,
// objects written straight into the repository's object store. Only run while nothing in the
// container can change the folder (paused or removed), so no file can be swapped mid-read.
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { git, ISOLATED_GIT_CONFIG, ISOLATED_GIT_ENV } from '../git.ts';
import type { Repo } from './paths.ts';

export interface Snapshot {
  /** The commit holding the folder's files on top of `base`; null when nothing changed. */
  commit: string | null;
  /** Paths left out of the commit: ignored files, nested repositories, unreadable files. */
  uncaptured: string[];
  /** The folder holds a .git the agent made (para never uses one). */
  plantedGit: boolean;
}

export interface SnapshotRequest {
  repo: Repo;
  folder: string;
  base: string;
  message: string;
  identity: { name: string; email: string };
  /** A session without a container has git's own .git file in its folder (a host worktree). */
  expectGitFile?: boolean;
}

export async function snapshotFolder(request: SnapshotRequest): Promise<Snapshot> {
  const stat = await fs.lstat(request.folder).catch(() => undefined);
  if (!stat?.isDirectory()) return { commit: null, uncaptured: [], plantedGit: false };
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'para-snapshot-'));
  try {
    const gitDir = path.join(dir, 'git');
    const env = {
      ...ISOLATED_GIT_ENV,
      HOME: dir,
      GIT_DIR: gitDir,
      GIT_WORK_TREE: request.folder,
      GIT_INDEX_FILE: path.join(dir, 'index'),
      GIT_OBJECT_DIRECTORY: path.join(request.repo.commonDir, 'objects'),
      GIT_AUTHOR_NAME: request.identity.name,
      GIT_AUTHOR_EMAIL: request.identity.email,
      GIT_COMMITTER_NAME: request.identity.name,
      GIT_COMMITTER_EMAIL: request.identity.email,
    };
    const run = (args: string[], allowFailure = false) => git([...ISOLATED_GIT_CONFIG, ...args], { cwd: dir, env, allowFailure });
    await git(['init', '-q'], { cwd: dir, env: { ...ISOLATED_GIT_ENV, HOME: dir, GIT_DIR: gitDir } });
    await run(['read-tree', request.base]);
    // --ignore-errors: a file git cannot read stays out of the commit (and keeps the folder) instead of failing.
    await run(['add', '--all', '--ignore-errors', '--', '.'], true);
    const tree = (await run(['write-tree'])).stdout.trim();
    const baseTree = (await run(['rev-parse', `${request.base}^{tree}`])).stdout.trim();
    const uncaptured = (await run(['ls-files', '-z', '--others', '--directory', '--no-empty-directory'])).stdout.split('\0').filter(Boolean);
    const plantedGit = !request.expectGitFile && Boolean(await fs.lstat(path.join(request.folder, '.git')).catch(() => undefined));
    if (plantedGit) uncaptured.unshift('.git');
    if (tree === baseTree) return { commit: null, uncaptured, plantedGit };
    const commit = (await run(['commit-tree', tree, '-p', request.base, '-m', request.message])).stdout.trim();
    return { commit, uncaptured, plantedGit };
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

