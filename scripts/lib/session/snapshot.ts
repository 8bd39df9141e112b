// The worktree folder's files, committed as data by the host's git: a private git folder and
// object store of para's own (no config, hooks, attributes or fsmonitor of anyone else's; the
// repository's objects only as an alternate), a temporary index. The new objects reach the
// repository through the same strict check as the agent's bundles. Only run while nothing in
// the container can change the folder (paused or removed), so no file is swapped mid-read.
import fs from 'fs-extra';
import path from 'node:path';
import { withTempDir } from '../cleanup.ts';
import { config } from '../config.ts';
import { errorMessage } from '../errors.ts';
import { git, ISOLATED_GIT_CONFIG, ISOLATED_GIT_ENV } from '../git.ts';
import type { Repo } from '../repo.ts';
import { indexPackStrict } from './transport.ts';

export interface Snapshot {
  /** The commit holding the folder's files on top of `base`; null when nothing changed (or it was refused). */
  commit: string | null;
  /** Paths left out of the commit: ignored files, nested repositories, unreadable files. */
  uncaptured: string[];
  /** The folder holds a .git the agent made (para never uses one). */
  plantedGit: boolean;
  /** Why the files could not be committed at all (git's checks refused them); the folder is then kept whole. */
  refused: string | null;
  /** Some file was added or changed relative to base (deletions alone can be an unfinished checkout). */
  written: boolean;
}

export interface SnapshotRequest {
  repo: Repo;
  folder: string;
  base: string;
  message: string;
  identity: { name: string; email: string };
  /** A session without a container has git's own .git file in its folder (a host worktree). */
  expectGitFile?: boolean;
  /** Compare only: write nothing into the repository. */
  probe?: boolean;
}

/** Files git reads while it walks a folder: one that is not a plain file would block or flood it. */
const READ_DURING_WALK = new Set(['.gitignore', '.gitattributes']);
const MAX_RELATIVE_PATH = 3000;

interface Survey {
  /** Paths git must not open: FIFOs, sockets, devices, files over the size limit, paths too deep. */
  excluded: string[];
  /** Why git cannot walk the folder at all, when so. */
  blocked: string | null;
}

/** Looks at every entry with lstat only (never opening or following anything) before git does. */
async function survey(folder: string, maxFileBytes: number): Promise<Survey> {
  const excluded: string[] = [];
  const pending = [''];
  while (pending.length > 0) {
    const relative = pending.pop()!;
    let entries: fs.Dirent[];
    try {
      entries = await fs.readdir(path.join(folder, relative), { withFileTypes: true });
    } catch {
      if (relative) excluded.push(relative);
      continue;
    }
    for (const entry of entries) {
      const child = relative ? `${relative}/${entry.name}` : entry.name;
      if (child === '.git') continue;
      if (Buffer.byteLength(child) > MAX_RELATIVE_PATH) {
        excluded.push(relative);
        break;
      }
      if (entry.isDirectory()) {
        pending.push(child);
        continue;
      }
      if (entry.isSymbolicLink()) continue;
      const special = !entry.isFile();
      const huge = !special && ((await fs.lstat(path.join(folder, child)).catch(() => undefined))?.size ?? 0) > maxFileBytes;
      if (!special && !huge) continue;
      if (READ_DURING_WALK.has(entry.name)) return { excluded, blocked: `${child} is ${special ? 'not a regular file' : 'too large'}` };
      excluded.push(child);
    }
  }
  return { excluded, blocked: null };
}

// ls-tree: "160000 commit <oid>\t<path>"; ls-files -s: "160000 <oid> <stage>\t<path>".
const TREE_GITLINK = /^160000 commit ([0-9a-f]+)\t(.*)$/s;
const INDEX_GITLINK = /^160000 ([0-9a-f]+) \d\t(.*)$/s;

async function gitlinks(run: (args: string[]) => Promise<{ stdout: string }>, args: string[], pattern: RegExp): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const entry of (await run(args)).stdout.split('\0')) {
    const match = pattern.exec(entry);
    if (match) found.set(match[2], match[1]);
  }
  return found;
}

export async function snapshotFolder(request: SnapshotRequest): Promise<Snapshot> {
  const stat = await fs.lstat(request.folder).catch(() => undefined);
  if (!stat?.isDirectory()) return { commit: null, uncaptured: [], plantedGit: false, refused: null, written: false };
  const plantedGit = !request.expectGitFile && Boolean(await fs.lstat(path.join(request.folder, '.git')).catch(() => undefined));
  const found = await survey(request.folder, config.snapshot.maxFileBytes);
  if (found.blocked) {
    return { commit: null, uncaptured: ['.'], plantedGit, refused: `git cannot read the folder safely (${found.blocked})`, written: true };
  }
  return withTempDir('para-snapshot-', async (dir) => {
    const gitDir = path.join(dir, 'git');
    const env = {
      ...ISOLATED_GIT_ENV,
      HOME: dir,
      GIT_DIR: gitDir,
      GIT_WORK_TREE: request.folder,
      GIT_INDEX_FILE: path.join(dir, 'index'),
      GIT_OBJECT_DIRECTORY: path.join(gitDir, 'objects'),
      GIT_ALTERNATE_OBJECT_DIRECTORIES: path.join(request.repo.commonDir, 'objects'),
      GIT_AUTHOR_NAME: request.identity.name,
      GIT_AUTHOR_EMAIL: request.identity.email,
      GIT_COMMITTER_NAME: request.identity.name,
      GIT_COMMITTER_EMAIL: request.identity.email,
    };
    const timeoutMs = config.snapshot.timeoutMs;
    const run = (args: string[], allowFailure = false) => git([...ISOLATED_GIT_CONFIG, ...args], { cwd: dir, env, allowFailure, timeoutMs });
    await git(['init', '-q'], { cwd: dir, env: { ...ISOLATED_GIT_ENV, HOME: dir, GIT_DIR: gitDir } });
    await run(['read-tree', request.base]);
    // What git must not open is left out by pathspec; --ignore-errors: a file git cannot read stays
    // out of the commit (its complaint keeps the folder) instead of failing the rest.
    const pathspec = path.join(dir, 'pathspec');
    await fs.writeFile(pathspec, ['.', ...found.excluded.map((p) => `:(exclude,literal)${p}`)].map((p) => `${p}\0`).join(''));
    const added = await run(['add', '--all', '--ignore-errors', `--pathspec-from-file=${pathspec}`, '--pathspec-file-nul'], true);
    const complaints = added.stderr.split('\n').filter((line) => /^(error|fatal):/.test(line));
    // A folder holding a repository is recorded by git as a pointer only (and git reads a HEAD the
    // agent chose): those stay out of the commit, and the folder is kept so their files survive.
    const before = await gitlinks(run, ['ls-tree', '-r', '-z', request.base], TREE_GITLINK);
    const after = await gitlinks(run, ['ls-files', '-s', '-z'], INDEX_GITLINK);
    const nested: string[] = [];
    for (const [file, oid] of after) {
      if (before.get(file) === oid) continue;
      nested.push(`${file}/`);
      if (before.has(file)) await run(['update-index', '--cacheinfo', `160000,${before.get(file)},${file}`]);
      else await run(['rm', '-q', '--cached', '--', file]);
    }
    const tree = (await run(['write-tree'])).stdout.trim();
    const baseTree = (await run(['rev-parse', `${request.base}^{tree}`])).stdout.trim();
    // (lists names only: it opens no file and reads no .gitignore)
    const others = (await run(['ls-files', '-z', '--others', '--directory', '--no-empty-directory'])).stdout.split('\0').filter(Boolean);
    const uncaptured = [
      ...new Set([...(plantedGit ? ['.git'] : []), ...nested, ...found.excluded, ...others, ...(complaints.length ? ['(files git could not read)'] : [])]),
    ];
    if (tree === baseTree) return { commit: null, uncaptured, plantedGit, refused: null, written: false };
    const written = (await run(['diff-index', '--cached', '--name-only', '--diff-filter=AMT', request.base])).stdout.trim().length > 0;
    const commit = (await run(['commit-tree', tree, '-p', request.base, '-m', request.message])).stdout.trim();
    if (request.probe) return { commit, uncaptured, plantedGit, refused: null, written };
    const packFile = path.join(dir, 'snapshot.pack');
    await git(['pack-objects', '--revs', '--stdout', '-q'], { cwd: dir, env, input: `${commit}\n^${request.base}\n`, stdoutFile: packFile, timeoutMs });
    try {
      await indexPackStrict(request.repo, packFile);
    } catch (error) {
      return { commit: null, uncaptured, plantedGit, refused: errorMessage(error), written };
    }
    return { commit, uncaptured, plantedGit, refused: null, written };
  });
}
