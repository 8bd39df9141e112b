// The session container: labels, mounts that make git work inside, a long-lived init process,
// background jobs whose output and exit code land in the session's run folder.
import fs from 'fs-extra';
import path from 'node:path';
import { config, extraLabels, labels, MANAGED_BY } from './config.ts';
import { docker, inspectContainer, labelArgs, startContainer } from './docker.ts';
import { git } from './git.ts';
import { imageUserIds } from './image.ts';
import type { SessionPaths } from './session-store.ts';

export interface SessionContainerSpec {
  name: string;
  session: string;
  repoRoot: string;
  gitCommonDir: string;
  paths: SessionPaths;
  image: string;
  network?: string;
  /** git user.name / user.email for the agent; read from the repository when absent. */
  identity?: Array<[string, string]>;
}

export function sessionLabels(session: string, repoRoot: string): Record<string, string> {
  return { ...extraLabels(), [labels.session]: session, [labels.repo]: repoRoot, [labels.managedBy]: MANAGED_BY };
}

function bind(source: string, target: string, readonly = false): string[] {
  // --mount, unlike -v, refuses a missing source instead of creating a root-owned folder.
  return ['--mount', `type=bind,source=${source},target=${target}${readonly ? ',readonly' : ''}`];
}

/** docker run arguments for a session container; exported for tests. */
export async function sessionRunArgs(spec: SessionContainerSpec): Promise<string[]> {
  const hooks = path.join(spec.gitCommonDir, 'hooks');
  // Without a hooks folder the agent could create one in the writable git folder.
  await fs.mkdir(hooks, { recursive: true });
  const args = ['run', '--detach', '--init', '--pull', 'never', '--name', spec.name, '--hostname', spec.session.slice(0, 63)];
  args.push(...labelArgs(sessionLabels(spec.session, spec.repoRoot)));
  args.push('--security-opt', 'no-new-privileges', ...identityEnv(spec.identity ?? (await gitIdentity(spec.repoRoot))));
  if (spec.network) args.push('--network', spec.network);
  args.push(
    ...bind(spec.gitCommonDir, spec.gitCommonDir),
    ...bind(hooks, hooks, true),
    ...bind(path.join(spec.gitCommonDir, 'config'), path.join(spec.gitCommonDir, 'config'), true),
    ...bind(spec.paths.worktree, spec.paths.worktree),
    ...bind(spec.paths.runDir, spec.paths.runDir),
    '--workdir', spec.paths.worktree,
    spec.image,
    'sleep', 'infinity',
  );
  return args;
}

/**
 * On a root host the agent runs as an unprivileged UID: hand it what this start created for the
 * session (worktree, run folder, the worktree's git admin folder, the para/ ref folders).
 */
export async function handOverToAgent(spec: Pick<SessionContainerSpec, 'session' | 'gitCommonDir' | 'paths'>): Promise<void> {
  await giveToAgent([
    spec.paths.worktree,
    spec.paths.runDir,
    path.join(spec.gitCommonDir, 'worktrees', spec.session),
    path.join(spec.gitCommonDir, 'refs', 'heads', 'para'),
    path.join(spec.gitCommonDir, 'logs', 'refs', 'heads', 'para'),
  ]);
}

/** On a root host, makes these paths (recursively, where they exist) the agent UID's. */
async function giveToAgent(targets: string[], ids = imageUserIds()): Promise<void> {
  if (process.getuid?.() !== 0) return;
  for (const target of targets) await chownTree(target, ids.uid, ids.gid);
}

async function chownTree(target: string, uid: number, gid: number): Promise<void> {
  try {
    await fs.lchown(target, uid, gid);
    if (!(await fs.lstat(target)).isDirectory()) return;
    for (const entry of await fs.readdir(target)) await chownTree(path.join(target, entry), uid, gid);
  } catch (error) {
    // A parallel start's lock file (refs/heads/para/x.lock) may vanish while we walk.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

/** Creates the run folder and starts the container (never pulling: a missing image fails fast). */
export async function createSessionContainer(spec: SessionContainerSpec): Promise<void> {
  await fs.mkdir(spec.paths.runDir, { recursive: true });
  await docker(await sessionRunArgs(spec), { timeoutMs: config.timeouts.dockerQuickMs });
}

/** The host's git identity for this repository (user.name / user.email), read in one git call. */
export async function gitIdentity(repoRoot: string): Promise<Array<[string, string]>> {
  const result = await git(['config', '--get-regexp', '^user\\.(name|email)$'], { cwd: repoRoot, allowFailure: true });
  const found = new Map<string, string>();
  for (const line of result.stdout.split('\n').filter(Boolean)) {
    const space = line.indexOf(' ');
    if (space > 0) found.set(line.slice(0, space), line.slice(space + 1));
  }
  return [...found.entries()];
}

/** Identity as environment configuration (git's GIT_CONFIG_COUNT protocol): the agent's commits are the user's. */
function identityEnv(identity: Array<[string, string]>): string[] {
  if (identity.length === 0) return [];
  const args = ['--env', `GIT_CONFIG_COUNT=${identity.length}`];
  identity.forEach(([key, value], i) => args.push('--env', `GIT_CONFIG_KEY_${i}=${key}`, '--env', `GIT_CONFIG_VALUE_${i}=${value}`));
  return args;
}

/** Starts the container when it exists but is stopped; false when it does not exist. */
export async function ensureRunning(container: string): Promise<boolean> {
  const info = await inspectContainer(container);
  if (!info) return false;
  if (!info.State.Running) await startContainer(container);
  return true;
}

/**
 * Runs a command in the background inside the container. Its output goes to the run folder's
 * log and its exit status to exit-code, written by a tiny sh wrapper (arguments, not a string).
 */
export async function startJob(container: string, paths: SessionPaths, command: string[]): Promise<void> {
  await fs.rm(paths.exitCodeFile, { force: true });
  await fs.writeFile(paths.logFile, '');
  await giveToAgent([paths.logFile]);
  const wrapper = 'log="$1"; code="$2"; shift 2; "$@" >>"$log" 2>&1 </dev/null; echo $? >"$code.tmp"; mv "$code.tmp" "$code"';
  await docker(['exec', '--detach', '--workdir', paths.worktree, container, 'sh', '-c', wrapper, 'para-job', paths.logFile, paths.exitCodeFile, ...command], {
    timeoutMs: config.timeouts.dockerQuickMs,
  });
}

/** Gives the user's terminal to a command in the container; returns its exit code. */
export async function attach(container: string, workdir: string, command: string[]): Promise<number> {
  const result = await docker(['exec', '--interactive', '--tty', '--workdir', workdir, container, ...command], { inheritStdio: true, allowFailure: true });
  return result.exitCode;
}

/**
 * Marks the worktree as trusted in the container's ~/.claude.json so the interactive claude
 * does not stop at the trust question; the file is replaced by rename, as claude itself does.
 */
export async function trustWorkspace(container: string, worktree: string): Promise<void> {
  const file = `${config.containerHome}/.claude.json`;
  const read = await docker(['exec', container, 'cat', file], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
  let data: Record<string, unknown> = {};
  if (read.exitCode === 0) {
    try {
      data = JSON.parse(read.stdout) as Record<string, unknown>;
    } catch {
      return; // leave a file we do not understand alone; claude will ask instead
    }
  }
  const projects = (data.projects ?? {}) as Record<string, Record<string, unknown>>;
  projects[worktree] = { ...(projects[worktree] ?? {}), hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true };
  data.projects = projects;
  await docker(['exec', '--interactive', container, 'sh', '-c', 'umask 077 && cat >"$1.para-tmp" && mv "$1.para-tmp" "$1"', 'para-trust', file], {
    input: `${JSON.stringify(data, null, 2)}\n`,
    timeoutMs: config.timeouts.dockerQuickMs,
  });
}

/** Claude keeps a folder's conversations in <config dir>/projects/<path with every other character as "-">. */
export function conversationFolder(claudeConfigDir: string, worktree: string): string {
  return `${claudeConfigDir}/projects/${worktree.replace(/[^A-Za-z0-9]/g, '-')}`;
}

/** Whether claude in the container has a conversation to continue for this worktree. */
export async function hasConversation(container: string, worktree: string): Promise<boolean> {
  const folder = conversationFolder(`${config.containerHome}/.claude`, worktree);
  const result = await docker(['exec', container, 'sh', '-c', 'ls "$1"/*.jsonl >/dev/null 2>&1', 'para-conversation', folder], {
    allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs,
  });
  return result.exitCode === 0;
}

