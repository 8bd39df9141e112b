// The one wrapper around the git CLI: every git call in the project goes through git().
import { execa } from 'execa';
import path from 'node:path';
import { ParaError } from './errors.ts';
import { childEnv } from './exec.ts';
import { traced } from './trace.ts';

export interface GitResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export class GitError extends ParaError {
  readonly args: string[];
  readonly stdout: string;
  readonly stderr: string;
  readonly gitExitCode: number;

  constructor(message: string, details: { args: string[]; stdout: string; stderr: string; exitCode: number; hint?: string; code?: string; cause?: unknown }) {
    super(message, { hint: details.hint, code: details.code ?? 'git-failed', cause: details.cause });
    this.name = 'GitError';
    this.args = details.args;
    this.stdout = details.stdout;
    this.stderr = details.stderr;
    this.gitExitCode = details.exitCode;
  }
}

export async function git(args: string[], options: GitOptions): Promise<GitResult> {
  return traced('git', args, () => runGit(args, options));
}

interface GitOptions {
  cwd: string;
  allowFailure?: boolean;
  input?: string;
  /** A file streamed to git's stdin (a pack). */
  inputFile?: string;
  /** Write stdout into this file (a pack). */
  stdoutFile?: string;
  timeoutMs?: number;
  env?: Record<string, string | undefined>;
}

async function runGit(args: string[], options: GitOptions): Promise<GitResult> {
  const result = await execa('git', args, {
    cwd: options.cwd,
    env: childEnv({ GIT_TERMINAL_PROMPT: '0', ...options.env }),
    extendEnv: false,
    reject: false,
    input: options.input,
    stdin: options.inputFile ? { file: options.inputFile } : options.input === undefined ? 'ignore' : 'pipe',
    stdout: options.stdoutFile ? { file: options.stdoutFile } : 'pipe',
    buffer: options.stdoutFile ? { stdout: false } : true,
    timeout: options.timeoutMs,
  });
  const out = { stdout: String(result.stdout ?? '').trim(), stderr: String(result.stderr ?? '').trim(), exitCode: result.exitCode ?? -1 };
  if ((result as { code?: string }).code === 'ENOENT') {
    throw new GitError('git is not installed: no `git` command on PATH', { args, ...out, code: 'git-not-installed', hint: 'install git and run again' });
  }
  if (result.timedOut) {
    throw new GitError(`git ${args.find((a) => !a.startsWith('-') && !a.includes('=')) ?? ''} did not finish in ${options.timeoutMs} ms`, {
      args,
      ...out,
      code: 'git-timeout',
    });
  }
  if (out.exitCode !== 0 && !options.allowFailure) {
    throw new GitError(`git ${args[0]} failed: ${out.stderr || `exit code ${out.exitCode}`}`, { args, ...out });
  }
  return out;
}

/**
 * git run on data the agent wrote, never on its configuration: no system or global config (no
 * filter or diff drivers a .gitattributes could name), no hooks, no fsmonitor.
 */
export const ISOLATED_GIT_ENV = { GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_ATTR_NOSYSTEM: '1' } as const;
export const ISOLATED_GIT_CONFIG = [
  '-c',
  'core.fsmonitor=false',
  '-c',
  'core.hooksPath=/dev/null',
  '-c',
  'core.untrackedCache=false',
  '-c',
  'core.symlinks=true',
];

export interface RepoInfo {
  /** The top folder of the main working tree (not of a linked worktree). */
  root: string;
  /** The main repository's git folder (shared by all worktrees), absolute. */
  commonDir: string;
}

/** The repository containing cwd; throws a clear error outside one. */
export async function findRepo(cwd: string): Promise<RepoInfo> {
  const result = await git(['rev-parse', '--path-format=absolute', '--git-common-dir', '--show-toplevel'], { cwd, allowFailure: true });
  if (result.exitCode !== 0) {
    throw new ParaError(`${cwd} is not inside a git repository`, {
      code: 'not-a-repo',
      hint: 'cd into your project (or run git init and make a first commit), then run again',
    });
  }
  const [commonDir, toplevel] = result.stdout.split('\n');
  if (!toplevel) {
    throw new ParaError(`${cwd} is inside a bare git repository or a git folder`, {
      code: 'not-a-repo',
      hint: 'run para from a working tree of the repository',
    });
  }
  // From a linked worktree, the main working tree is the parent of the common git folder.
  const root = path.basename(commonDir) === '.git' ? path.dirname(commonDir) : toplevel;
  return { root, commonDir };
}

export interface RepoSnapshot extends RepoInfo {
  /** HEAD's commit; undefined in a repository without a commit. */
  head?: string;
  /** The checked-out branch; undefined when HEAD is detached or unborn. */
  branch?: string;
}

/** Repository, HEAD commit and current branch in one git call (the common case), else two. */
export async function repoSnapshot(cwd: string): Promise<RepoSnapshot> {
  const result = await git(['rev-parse', '--path-format=absolute', '--git-common-dir', '--show-toplevel', 'HEAD^{commit}', '--symbolic-full-name', 'HEAD'], {
    cwd,
    allowFailure: true,
  });
  const [commonDir, toplevel, head, ref] = result.stdout.split('\n');
  if (result.exitCode !== 0 || !head || !ref) return findRepo(cwd);
  const root = path.basename(commonDir) === '.git' ? path.dirname(commonDir) : toplevel;
  return { root, commonDir, head, branch: ref.startsWith('refs/heads/') ? ref.slice('refs/heads/'.length) : undefined };
}
