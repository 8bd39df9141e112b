// Session state: <git folder>/para/sessions/<name>.json, written only by para and validated on
// every read. A bad entry is reported on its own and never blocks the others.
import fs from 'fs-extra';
import path from 'node:path';
import type { CredentialsMode } from '../config.ts';
import { ParaError } from '../errors.ts';
import { EGRESS_MODES, hostPatternProblem, type EgressState } from '../egress/rules.ts';
import { engineFor, type Engine } from '../engine/engine.ts';
import { DEFAULT_ENGINE, type EngineTarget } from '../engine/target.ts';
import { REMOTE_WORK_TREE } from './agent-repo.ts';
import { sessionPaths, stateDir, validateSessionName } from './paths.ts';
import type { Repo } from '../repo.ts';

export type SessionStatus = 'starting' | 'active' | 'finished';
export type PermissionMode = 'bypass' | 'ask';

export interface JobState {
  /** The command run in the background (claude -p ..., or the -- CMD). */
  command: string[];
  startedAt: string;
  /** The container's start time when the job began: a restarted container no longer runs it. */
  containerStartedAt: string | null;
  exitCode: number | null;
  finishedAt: string | null;
  /** A random id the container's status line names the job by (a line about an earlier job is not this one's). */
  id?: string;
}

export interface Limits {
  memory: string;
  cpus: string;
  pidsLimit: number;
}

export interface SessionState {
  version: 2;
  name: string;
  repo: string;
  branch: string;
  baseBranch: string | null;
  baseCommit: string;
  worktree: string;
  /** The container's name, or null for a session without a container. */
  container: string | null;
  image: string | null;
  /** The docker network the session reaches the outside through (its proxy's, or its own when open); null: Docker's default. */
  network: string | null;
  /** How the session reaches the outside; absent in sessions started before egress modes. */
  egress?: EgressState;
  /** The Docker engine the session lives on; absent: the default engine (sessions from before engines were recorded). */
  engine?: EngineTarget;
  /** The OCI runtime its container runs under (runsc: gVisor); absent: the engine's default. */
  runtime?: string;
  /** When `para egress NAME` last showed the proxy's refusals (list counts those after it). */
  egressSeenAt?: string;
  /** Whether an attached claude asks before it runs tools; absent: bypass (no prompts). */
  permissions?: PermissionMode;
  /** How its claude gets the login: through the engine's broker (none in the container), or baked into its image; absent: image. */
  credentials?: CredentialsMode;
  /** broker: the login image its broker serves (absent: its image, or para-authenticated for a tools image). */
  brokerImage?: string;
  limits: Limits | null;
  prompt: string | null;
  createdAt: string;
  status: SessionStatus;
  /** pid of the start that is creating it, while status is "starting". */
  pid?: number;
  job: JobState | null;
  finishedAt?: string;
}

const COMMIT = /^[0-9a-f]{40}([0-9a-f]{24})?$/;
const STATUSES: SessionStatus[] = ['starting', 'active', 'finished'];

/** A runtime's name as docker registers it. */
export const RUNTIME_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

function damaged(file: string, why: string): ParaError {
  return new ParaError(`the session state file ${file} is not valid (${why})`, {
    code: 'state-damaged',
    hint: `move it away (mv ${file} ${file}.bak), then run para clean`,
  });
}

/** Parses and checks a state file against what para itself derives for that name. */
export function parseState(repo: Repo, name: string, text: string, file: string): SessionState {
  let data: Partial<SessionState>;
  try {
    data = JSON.parse(text) as Partial<SessionState>;
  } catch {
    throw damaged(file, 'not JSON');
  }
  if (!data || typeof data !== 'object') throw damaged(file, 'not an object');
  const expected = sessionPaths(repo, name);
  if (data.version !== 2) throw damaged(file, `version ${String(data.version)}, expected 2`);
  if (data.name !== name) throw damaged(file, `names session ${JSON.stringify(data.name)}`);
  if (data.repo !== repo.root) throw damaged(file, `names repository ${JSON.stringify(data.repo)}`);
  if (data.branch !== expected.branch) throw damaged(file, `branch ${JSON.stringify(data.branch)} is not ${expected.branch}`);
  if (data.worktree !== expected.worktree) throw damaged(file, `worktree ${JSON.stringify(data.worktree)} is not ${expected.worktree}`);
  if (data.container !== null && data.container !== expected.container)
    throw damaged(file, `container ${JSON.stringify(data.container)} is not ${expected.container}`);
  if (typeof data.baseCommit !== 'string' || !COMMIT.test(data.baseCommit)) throw damaged(file, 'no valid base commit');
  if (!STATUSES.includes(data.status as SessionStatus)) throw damaged(file, `status ${JSON.stringify(data.status)}`);
  if (data.image !== null && (typeof data.image !== 'string' || data.image.startsWith('-'))) throw damaged(file, 'bad image');
  if (data.job !== null && data.job !== undefined && !Array.isArray(data.job.command)) throw damaged(file, 'bad job');
  if (data.job?.id !== undefined && !/^[0-9a-f]{16}$/.test(String(data.job.id))) throw damaged(file, 'bad job id');
  if (data.engine !== undefined) {
    const e = data.engine;
    const text = (value: unknown) => value === null || (typeof value === 'string' && value.length > 0 && !value.startsWith('-') && !/[\s]/.test(value));
    if (!e || !text(e.context) || !text(e.host) || typeof e.remote !== 'boolean') throw damaged(file, 'bad engine');
  }
  if (data.egressSeenAt !== undefined && (typeof data.egressSeenAt !== 'string' || Number.isNaN(Date.parse(data.egressSeenAt))))
    throw damaged(file, 'bad egressSeenAt');
  if (data.permissions !== undefined && data.permissions !== 'bypass' && data.permissions !== 'ask') throw damaged(file, 'bad permissions');
  if (data.credentials !== undefined && data.credentials !== 'broker' && data.credentials !== 'image') throw damaged(file, 'bad credentials');
  if (data.runtime !== undefined && (typeof data.runtime !== 'string' || !RUNTIME_NAME.test(data.runtime))) throw damaged(file, 'bad runtime');
  if (data.egress !== undefined) {
    const e = data.egress;
    const patterns = (list: unknown) => Array.isArray(list) && list.every((h) => typeof h === 'string' && !hostPatternProblem(h));
    if (!e || !EGRESS_MODES.includes(e.mode) || !patterns(e.allow) || !patterns(e.hosts)) throw damaged(file, 'bad egress');
  }
  return { network: null, limits: null, ...data, job: data.job ?? null } as SessionState;
}

/** The folder the agent works in, inside its container: the host folder's path, or (remote) a folder in its volume. */
/** The engine a session lives on (sessions from before engines were recorded: the default one). */
export function engineOf(state: Pick<SessionState, 'engine'>): EngineTarget {
  return state.engine ?? DEFAULT_ENGINE;
}

/** The engine a session's every docker call goes to, whatever the shell names now. */
export function sessionEngine(state: Pick<SessionState, 'engine' | 'runtime'>): Engine {
  return engineFor(engineOf(state), { runtime: state.runtime ?? null });
}

export function workTreeOf(state: Pick<SessionState, 'engine' | 'worktree'>): string {
  return state.engine?.remote ? REMOTE_WORK_TREE : state.worktree;
}

export async function readSession(repo: Repo, name: string): Promise<SessionState | undefined> {
  if (validateSessionName(name)) return undefined;
  const file = sessionPaths(repo, name).stateFile;
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  return parseState(repo, name, text, file);
}

export async function ensureStateDir(repo: Repo): Promise<void> {
  await fs.mkdir(stateDir(repo), { recursive: true, mode: 0o700 });
}

/**
 * Creates the state file only if none exists: the lock that makes two starts of one name
 * exclusive. Written aside, then hard-linked into place (atomic, fails if the name is taken).
 */
export async function createSessionExclusive(repo: Repo, state: SessionState): Promise<boolean> {
  const file = sessionPaths(repo, state.name).stateFile;
  const temporary = `${file}.${process.pid}.${Date.now()}.new`;
  await fs.writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { flag: 'wx', mode: 0o600 });
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

/** Replaces the state file atomically (write aside, then rename). */
export async function writeSession(repo: Repo, state: SessionState): Promise<void> {
  const file = sessionPaths(repo, state.name).stateFile;
  const temporary = `${file}.${process.pid}.tmp`;
  await fs.writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  await fs.rename(temporary, file);
}

export async function deleteSession(repo: Repo, name: string): Promise<void> {
  await fs.rm(sessionPaths(repo, name).stateFile, { force: true });
}

export interface StateProblem {
  file: string;
  message: string;
}

/** Every valid session, and one problem per file that is not. */
export async function listSessions(repo: Repo): Promise<{ sessions: SessionState[]; problems: StateProblem[] }> {
  const dir = stateDir(repo);
  let files: string[];
  try {
    files = await fs.readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { sessions: [], problems: [] };
    throw error;
  }
  const sessions: SessionState[] = [];
  const problems: StateProblem[] = [];
  for (const file of files.filter((f) => f.endsWith('.json')).sort()) {
    const name = file.slice(0, -'.json'.length);
    const full = path.join(dir, file);
    if (validateSessionName(name)) {
      problems.push({ file: full, message: `${full} does not name a valid session` });
      continue;
    }
    try {
      const state = await readSession(repo, name);
      if (state) sessions.push(state);
    } catch (error) {
      problems.push({ file: full, message: error instanceof Error ? error.message : String(error) });
    }
  }
  return { sessions, problems };
}

/** Whether the start that is creating a "starting" session still runs on this machine. */
export function starterAlive(state: Pick<SessionState, 'pid'>): boolean {
  if (!state.pid) return false;
  try {
    process.kill(state.pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
