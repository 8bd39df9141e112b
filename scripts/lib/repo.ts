// The repository para works for, and the labels that mark a resource as para's, of this
// repository and of one session. Every area (engine resources, the egress proxy, images, sessions)
// tells its own resources apart from anyone else's by these labels, so they live below all of them.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { extraLabels, labels, MANAGED_BY } from './config.ts';

export interface Repo {
  /** The top folder of the main working tree. */
  root: string;
  /** The repository's git folder (shared by all its worktrees), absolute. */
  commonDir: string;
}

const ids = new Map<string, string>();

/**
 * This repository's own id, made once and kept in its git folder (para/repo-id): two repositories
 * at the same path on two machines that share an engine are told apart by it, never by the path.
 */
export function repoId(repo: Repo): string {
  const known = ids.get(repo.commonDir);
  if (known) return known;
  const file = path.join(repo.commonDir, 'para', 'repo-id');
  let id = '';
  try {
    id = fs.readFileSync(file, 'utf8').trim();
  } catch {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    try {
      fs.writeFileSync(file, `${randomBytes(8).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    id = fs.readFileSync(file, 'utf8').trim();
  }
  if (!/^[0-9a-f]{16}$/.test(id)) throw new Error(`${file} does not hold a repository id: move it away and run again`);
  ids.set(repo.commonDir, id);
  return id;
}

/** A short stable hash of the repository's top folder, so two repositories' sessions never share names. */
export function repoHash(root: string): string {
  return createHash('sha256').update(root).digest('hex').slice(0, 8);
}

export function sessionLabels(session: string, repo: Repo): Record<string, string> {
  return { ...extraLabels(), [labels.session]: session, [labels.repo]: repo.root, [labels.repoId]: repoId(repo), [labels.managedBy]: MANAGED_BY };
}

/**
 * Whether a resource labelled for this repository's path is this repository's: one made by another
 * repository at the same path (another machine sharing the engine) carries another id. Resources
 * from before ids were given carry none and count as this repository's.
 */
export function ownedBy(found: Record<string, string> | null | undefined, repo: Repo): boolean {
  const id = found?.[labels.repoId];
  return id === undefined || id === repoId(repo);
}

/** Whether a resource's labels name it para's, of this repository (path and id), and of `session` when given. */
export function labelledFor(found: Record<string, string> | null | undefined, repo: Repo, session?: string): boolean {
  return (
    found?.[labels.managedBy] === MANAGED_BY &&
    found[labels.repo] === repo.root &&
    (session === undefined || found[labels.session] === session) &&
    ownedBy(found, repo)
  );
}

/** Labels every resource of this repository carries: what list, clean and the doctor filter on. */
export function repoLabels(repoRoot: string): Record<string, string> {
  return { [labels.managedBy]: MANAGED_BY, [labels.repo]: repoRoot };
}
