// Where a session's pieces live: every path and name is derived from the validated session
// name and the repository, never read back from a file the agent could have written.
import path from 'node:path';
import { repoHash, type Repo } from '../repo.ts';

export const SESSION_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$/;
export const SESSION_NAME_FORM = '1 to 50 characters: a letter or digit, then letters, digits, "_" or "-"';

/** Names whose branch would collide with para's own refs (para/archived/<time>/<name>). */
const RESERVED_NAMES = new Set(['archived']);

export function validateSessionName(name: string): string | undefined {
  if (!SESSION_NAME_PATTERN.test(name)) return `invalid session name ${JSON.stringify(name)}: use ${SESSION_NAME_FORM}`;
  if (RESERVED_NAMES.has(name.toLowerCase())) return `the session name "${name}" is reserved by para; choose another`;
  return undefined;
}

export function isReservedName(name: string): boolean {
  return RESERVED_NAMES.has(name.toLowerCase());
}

export interface SessionPaths {
  name: string;
  branch: string;
  ref: string;
  /** The folder the agent works in, bind-mounted into its container: the only host path it can write. */
  worktree: string;
  /** para's own state, inside the git folder: no merge or checkout can put a file there. */
  stateFile: string;
  container: string;
  /** The docker volume holding the agent's own git repository. */
  volume: string;
  /** The session's egress proxy (allowlist mode), on the network that reaches the outside. */
  proxy: string;
  /** The loopback forwarder in the session container's network namespace (allowlist mode). */
  forwarder: string;
  /** The volume holding the proxy's configuration and unix socket; never mounted into the session. */
  egressVolume: string;
}

/** <repo>/.para: the visible folder, holding the worktree folders, a .gitignore, and the team's allowed-hosts. */
export function paraDir(repo: Repo): string {
  return path.join(repo.root, '.para');
}

export function worktreesDir(repo: Repo): string {
  return path.join(paraDir(repo), 'worktrees');
}

/** Folders of finished or cancelled sessions that held files para could not commit (ignored files). */
export function keptDir(repo: Repo): string {
  return path.join(paraDir(repo), 'kept');
}

/** <git folder>/para: state only para writes. */
export function stateDir(repo: Repo): string {
  return path.join(repo.commonDir, 'para', 'sessions');
}

export function sessionPaths(repo: Repo, name: string): SessionPaths {
  const hash = repoHash(repo.root);
  return {
    name,
    branch: `para/${name}`,
    ref: `refs/heads/para/${name}`,
    worktree: path.join(worktreesDir(repo), name),
    stateFile: path.join(stateDir(repo), `${name}.json`),
    container: `para-${name}-${hash}`,
    volume: `para-${name}-${hash}-git`,
    proxy: `para-${name}-${hash}-proxy`,
    forwarder: `para-${name}-${hash}-forward`,
    egressVolume: `para-${name}-${hash}-egress`,
  };
}

/** The pattern of every container name para gives a session of this repository. */
export function isSessionContainerName(repo: Repo, container: string): boolean {
  const hash = repoHash(repo.root);
  const match = /^para-(.+)-([0-9a-f]{8})$/.exec(container);
  return Boolean(match && match[2] === hash && SESSION_NAME_PATTERN.test(match[1]));
}

/** para/archived/<UTC time>/<name>: where cancel keeps a session's branch. */
export function archivePrefix(name: string, now = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  return `para/archived/${stamp}/${name}`;
}
