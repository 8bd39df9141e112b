// The session container: one place builds its docker run arguments (labels, the only writable
// host mount, limits, no privileges), and every command para runs in it goes through exec().
import { config, extraLabels, labels, MANAGED_BY } from '../config.ts';
import { docker, labelArgs, type DockerOptions, type DockerResult } from '../docker.ts';
import { AGENT_GIT_DIR, AGENT_VOLUME_DIR, entryCommand, type SeedPlan } from './agent-repo.ts';
import type { Limits } from './store.ts';
import { repoId, type Repo, type SessionPaths } from './paths.ts';

export interface ContainerSpec {
  repo: Repo;
  paths: SessionPaths;
  image: string;
  network: string | null;
  limits: Limits;
  /** git user.name / user.email for the agent's commits. */
  identity: Array<[string, string]>;
  /** Extra mounts and environment from the transport (for example the host's objects, read-only). */
  mounts: Mount[];
  /** How the container's start command makes the agent's repository. */
  seed: SeedPlan;
  /** Environment for every process in the container (the egress proxy's address); never a secret. */
  env?: Record<string, string>;
  /**
   * Where the agent's files are: the host folder bind-mounted at its own path (a local engine), or
   * a folder in the session's volume (a remote engine, which sees none of this machine's files).
   */
  workTree: { path: string; hostFolder: boolean };
}

export interface Mount {
  type: 'bind' | 'volume';
  source: string;
  target: string;
  readonly: boolean;
  /** Labels of a volume docker creates for this mount. */
  labels?: Record<string, string>;
  /** Fill a new volume with what the image holds at the target (its owner included). */
  copyFromImage?: boolean;
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

/** One --mount value; fields are CSV-quoted so paths with commas, quotes or spaces survive. */
export function mountArg(mount: Mount): string[] {
  const field = (text: string) => `"${text.replace(/"/g, '""')}"`;
  const fields = [`type=${mount.type}`, field(`source=${mount.source}`), field(`target=${mount.target}`)];
  if (mount.readonly) fields.push('readonly');
  if (mount.type === 'volume' && !mount.copyFromImage) fields.push('volume-nocopy');
  for (const [key, value] of Object.entries(mount.labels ?? {})) fields.push(field(`volume-label=${key}=${value}`));
  return ['--mount', fields.join(',')];
}

/** docker run arguments for a session container. */
export function sessionRunArgs(spec: ContainerSpec): string[] {
  const { paths } = spec;
  const args = ['run', '--detach', '--init', '--pull', 'never', '--name', paths.container, '--hostname', paths.name.slice(0, 63).replace(/_/g, '-')];
  args.push(...labelArgs(sessionLabels(paths.name, spec.repo)));
  // The agent runs only as the image's non-root user (every exec names it). The container's own
  // process is root with four capabilities so that para's bookkeeping execs (giving the volume to
  // the agent, the job wrapper) keep them: docker 20.10 gives a root exec no capabilities when the
  // container's user is not root and no-new-privileges is set.
  args.push('--user', '0', '--security-opt', 'no-new-privileges', '--cap-drop', 'ALL');
  for (const cap of ['CHOWN', 'SETUID', 'SETGID', 'DAC_OVERRIDE']) args.push('--cap-add', cap);
  args.push('--memory', spec.limits.memory, '--cpus', spec.limits.cpus, '--pids-limit', String(spec.limits.pidsLimit));
  if (spec.network) args.push('--network', spec.network);
  args.push('--env', `GIT_DIR=${AGENT_GIT_DIR}`, '--env', `GIT_WORK_TREE=${spec.workTree.path}`, ...identityEnv(spec.identity));
  for (const [key, value] of Object.entries(spec.env ?? {})) args.push('--env', `${key}=${value}`);
  for (const mount of [
    ...(spec.workTree.hostFolder ? [{ type: 'bind' as const, source: paths.worktree, target: paths.worktree, readonly: false }] : []),
    // docker creates the volume with the session's labels, or reuses it (a re-created container).
    { type: 'volume' as const, source: paths.volume, target: AGENT_VOLUME_DIR, readonly: false, labels: sessionLabels(paths.name, spec.repo) },
    ...spec.mounts,
  ])
    args.push(...mountArg(mount));
  // In the volume, the container's own working directory is its top folder: docker makes a missing
  // working directory as root, and nothing of root's may be made inside what the agent controls.
  args.push('--workdir', spec.workTree.hostFolder ? spec.workTree.path : AGENT_VOLUME_DIR, spec.image, ...entryCommand(spec.seed));
  return args;
}

/** Identity as environment configuration (git's GIT_CONFIG_COUNT protocol): the agent's commits are the user's. */
function identityEnv(identity: Array<[string, string]>): string[] {
  if (identity.length === 0) return [];
  const args = ['--env', `GIT_CONFIG_COUNT=${identity.length}`];
  for (const [i, [key, value]] of identity.entries()) args.push('--env', `GIT_CONFIG_KEY_${i}=${key}`, '--env', `GIT_CONFIG_VALUE_${i}=${value}`);
  return args;
}

export async function runContainer(spec: ContainerSpec): Promise<void> {
  await docker(sessionRunArgs(spec), { timeoutMs: config.timeouts.dockerQuickMs });
}

export interface ExecOptions extends Omit<DockerOptions, 'inheritStdio'> {
  /** Run as root (para's own bookkeeping), else as the agent's user. */
  root?: boolean;
  workdir?: string;
  interactive?: boolean;
  tty?: boolean;
  detach?: boolean;
}

/** docker exec in a session container; the user is always given explicitly. */
export async function exec(container: string, command: string[], options: ExecOptions = {}): Promise<DockerResult> {
  const args = ['exec', '--user', options.root ? '0' : config.containerUser];
  if (options.workdir) args.push('--workdir', options.workdir);
  if (options.interactive || options.input !== undefined || options.inputFile !== undefined) args.push('--interactive');
  if (options.tty) args.push('--tty');
  if (options.detach) args.push('--detach');
  args.push(container, ...command);
  return docker(args, { timeoutMs: config.timeouts.dockerQuickMs, ...options, inheritStdio: Boolean(options.tty) });
}

/** Gives the user's terminal to a command in the container; returns its exit code. */
export async function attach(container: string, workdir: string, command: string[]): Promise<number> {
  const result = await exec(container, command, { workdir, interactive: true, tty: true, allowFailure: true, timeoutMs: undefined });
  return result.exitCode;
}

/**
 * Marks the worktree as trusted in the container's ~/.claude.json so the interactive claude
 * does not stop at the trust question; the file is replaced by rename, as claude itself does.
 */
export async function trustWorkspace(container: string, worktree: string): Promise<void> {
  const file = `${config.containerHome}/.claude.json`;
  const read = await exec(container, ['cat', file], { allowFailure: true });
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
  await exec(container, ['sh', '-c', 'umask 077 && cat >"$1.para-tmp" && mv "$1.para-tmp" "$1"', 'para-trust', file], {
    input: `${JSON.stringify(data, null, 2)}\n`,
  });
}

/** Claude keeps a folder's conversations in <config dir>/projects/<path with every other character as "-">. */
export function conversationFolder(claudeConfigDir: string, worktree: string): string {
  return `${claudeConfigDir}/projects/${worktree.replace(/[^A-Za-z0-9]/g, '-')}`;
}

/** Whether claude in the container has a conversation to continue for this worktree. */
export async function hasConversation(container: string, worktree: string): Promise<boolean> {
  const folder = conversationFolder(`${config.containerHome}/.claude`, worktree);
  const result = await exec(container, ['sh', '-c', 'ls "$1"/*.jsonl >/dev/null 2>&1', 'para-conversation', folder], { allowFailure: true });
  return result.exitCode === 0;
}
