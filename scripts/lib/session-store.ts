// Where a session lives on disk, and its state file <repo>/.para/state/<name>.json.
import { createHash } from 'node:crypto';
import fs from 'fs-extra';
import path from 'node:path';
import { ParaError } from './errors.ts';

export const SESSION_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,49}$/;
export const SESSION_NAME_FORM = '1 to 50 characters: a letter or digit, then letters, digits, "_" or "-"';

export type SessionStatus = 'starting' | 'active' | 'finished';

export interface JobState {
  /** The command run in the background (claude -p ..., or the -- CMD). */
  command: string[];
  startedAt: string;
  exitCode: number | null;
  finishedAt: string | null;
}

export interface SessionState {
  version: 1;
  name: string;
  repo: string;
  branch: string;
  baseBranch: string | null;
  baseCommit: string;
  worktree: string;
  container: string | null;
  image: string | null;
  prompt: string | null;
  createdAt: string;
  status: SessionStatus;
  /** pid of the start.ts that is creating it, while status is "starting". */
  pid?: number;
  job: JobState | null;
  finishedAt?: string;
}

export interface SessionPaths {
  paraDir: string;
  stateFile: string;
  worktree: string;
  /** Per-session folder mounted into the container for background output and exit code. */
  runDir: string;
  logFile: string;
  exitCodeFile: string;
  branch: string;
}

export function paraDir(repoRoot: string): string {
  return path.join(repoRoot, '.para');
}

export function sessionPaths(repoRoot: string, name: string): SessionPaths {
  const dir = paraDir(repoRoot);
  const runDir = path.join(dir, 'run', name);
  return {
    paraDir: dir,
    stateFile: path.join(dir, 'state', `${name}.json`),
    worktree: path.join(dir, 'worktrees', name),
    runDir,
    logFile: path.join(runDir, 'output.log'),
    exitCodeFile: path.join(runDir, 'exit-code'),
    branch: `para/${name}`,
  };
}

/** Docker container name: unique per repository and session. */
export function containerName(repoRoot: string, name: string): string {
  const hash = createHash('sha256').update(repoRoot).digest('hex').slice(0, 8);
  return `para-${name}-${hash}`;
}

/** Names whose branch would collide with para's own refs (para/archived/<time>/<name>). */
const RESERVED_NAMES = new Set(['archived']);

export function validateSessionName(name: string): string | undefined {
  if (!SESSION_NAME_PATTERN.test(name)) return `invalid session name ${JSON.stringify(name)}: use ${SESSION_NAME_FORM}`;
  if (RESERVED_NAMES.has(name)) return `the session name "${name}" is reserved by para; choose another`;
  return undefined;
}

/** Creates .para/ with a .gitignore of "*" so it ignores itself and touches no user file. */
export async function ensureParaDir(repoRoot: string): Promise<void> {
  const dir = paraDir(repoRoot);
  await fs.mkdir(path.join(dir, 'state'), { recursive: true });
  await fs.mkdir(path.join(dir, 'worktrees'), { recursive: true });
  await fs.mkdir(path.join(dir, 'run'), { recursive: true });
  const ignore = path.join(dir, '.gitignore');
  if (!(await fs.pathExists(ignore))) await fs.writeFile(ignore, '*\n');
}

function parseState(text: string, file: string): SessionState {
  try {
    const data = JSON.parse(text) as SessionState;
    if (data && typeof data.name === 'string' && typeof data.branch === 'string') return data;
  } catch {
    // fall through to the error below
  }
  throw new ParaError(`the session state file ${file} is damaged`, { code: 'state-damaged', hint: `move it away (mv ${file} ${file}.bak), then run scripts/clean.ts` });
}

export async function readSession(repoRoot: string, name: string): Promise<SessionState | undefined> {
  const file = sessionPaths(repoRoot, name).stateFile;
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseState(text, file);
}

/**
 * Creates the state file only if none exists: the lock that makes two starts of one name
 * exclusive. Returns false when it already existed.
 */
export async function createSessionExclusive(state: SessionState): Promise<boolean> {
  const file = sessionPaths(state.repo, state.name).stateFile;
  // Written aside, then hard-linked into place: the link is atomic and fails if the name is
  // taken, so a concurrent reader never sees a half-written file.
  const temporary = `${file}.${process.pid}.${Date.now()}.new`;
  await fs.writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { flag: 'wx' });
  try {
    await fs.link(temporary, file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await fs.rm(temporary, { force: true });
  }
}

/** Replaces the state file atomically (write then rename). */
export async function writeSession(state: SessionState): Promise<void> {
  const file = sessionPaths(state.repo, state.name).stateFile;
  const temporary = `${file}.${process.pid}.tmp`;
  await fs.writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`);
  await fs.rename(temporary, file);
}

export async function deleteSession(repoRoot: string, name: string): Promise<void> {
  await fs.rm(sessionPaths(repoRoot, name).stateFile, { force: true });
}

export async function listSessions(repoRoot: string): Promise<SessionState[]> {
  const dir = path.join(paraDir(repoRoot), 'state');
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const sessions: SessionState[] = [];
  for (const file of names.filter((n) => n.endsWith('.json')).sort()) {
    const state = await readSession(repoRoot, file.slice(0, -'.json'.length));
    if (state) sessions.push(state);
  }
  return sessions;
}

/** Whether the start.ts that is creating a "starting" session still runs on this machine. */
export function starterAlive(state: Pick<SessionState, 'pid'>): boolean {
  if (!state.pid) return false;
  try {
    process.kill(state.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Reads a finished background job's exit code from the run folder, when it has one. */
export async function readJobExitCode(paths: SessionPaths): Promise<number | undefined> {
  try {
    const text = (await fs.readFile(paths.exitCodeFile, 'utf8')).trim();
    const code = Number(text);
    return Number.isInteger(code) ? code : undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
