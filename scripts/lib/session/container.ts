// The session container: one place builds its run spec (labels, the only writable
// host mount, limits, no privileges), and every command para runs in it goes through exec(engine).
import { config } from '../config.ts';
import type { DockerResult } from '../engine/docker.ts';
import type { Engine, ExecOptions } from '../engine/engine.ts';
import type { Mount, RunSpec } from '../engine/spec.ts';
import { sessionLabels, type Repo } from '../repo.ts';
import { AGENT_GIT_DIR, AGENT_VOLUME_DIR, entryCommand, type SeedPlan } from './agent-repo.ts';
import type { Limits } from './store.ts';
import type { SessionPaths } from './paths.ts';

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

/** The run spec of a session container; the engine's runtime (runc, runsc) is the engine's to say. */
export function sessionRunSpec(spec: ContainerSpec, runtime: string | null = null): RunSpec {
  const { paths } = spec;
  return {
    image: spec.image,
    name: paths.container,
    hostname: paths.name.slice(0, 63).replace(/_/g, '-'),
    labels: sessionLabels(paths.name, spec.repo),
    init: true,
    runtime,
    // The agent runs only as the image's non-root user (every exec names it). The container's own
    // process is root with four capabilities so that para's bookkeeping execs (giving the volume to
    // the agent, the job wrapper) keep them: docker 20.10 gives a root exec no capabilities when the
    // container's user is not root and no-new-privileges is set.
    user: '0',
    noNewPrivileges: true,
    capabilities: { drop: 'ALL', add: ['CHOWN', 'SETUID', 'SETGID', 'DAC_OVERRIDE'] },
    memory: spec.limits.memory,
    cpus: spec.limits.cpus,
    pidsLimit: spec.limits.pidsLimit,
    network: spec.network,
    // No GIT_DIR for the agent: git finds its repository from the work folder only (a gitfile beside
    // the folder, written at every start), and is plain git anywhere else. The folder is a bind
    // mount, so git's discovery must look past it to that gitfile.
    env: { PARA_WORK_TREE: spec.workTree.path, GIT_DISCOVERY_ACROSS_FILESYSTEM: '1', ...identityEnv(spec.identity), ...spec.env },
    mounts: [
      ...(spec.workTree.hostFolder ? [{ type: 'bind' as const, source: paths.worktree, target: paths.worktree, readonly: false }] : []),
      // docker creates the volume with the session's labels, or reuses it (a re-created container).
      { type: 'volume' as const, source: paths.volume, target: AGENT_VOLUME_DIR, readonly: false, labels: sessionLabels(paths.name, spec.repo) },
      ...spec.mounts,
    ],
    // In the volume, the container's own working directory is its top folder: docker makes a missing
    // working directory as root, and nothing of root's may be made inside what the agent controls.
    workdir: spec.workTree.hostFolder ? spec.workTree.path : AGENT_VOLUME_DIR,
    command: entryCommand(spec.seed),
  };
}

/** Identity as environment configuration (git's GIT_CONFIG_COUNT protocol): the agent's commits are the user's. */
function identityEnv(identity: Array<[string, string]>): Record<string, string> {
  if (identity.length === 0) return {};
  const env: Record<string, string> = { GIT_CONFIG_COUNT: String(identity.length) };
  for (const [i, [key, value]] of identity.entries()) {
    env[`GIT_CONFIG_KEY_${i}`] = key;
    env[`GIT_CONFIG_VALUE_${i}`] = value;
  }
  return env;
}

export async function runContainer(engine: Engine, spec: ContainerSpec): Promise<void> {
  await engine.run(sessionRunSpec(spec, engine.runtime), { detach: true });
}

export interface SessionExecOptions extends Omit<ExecOptions, 'user'> {
  /** Run as root (para's own bookkeeping), else as the agent's user. */
  root?: boolean;
  /**
   * The agent's own processes (claude attached, a background job): git finds the session's
   * repository as in a checkout, from the work folder only. Everything else para runs names the
   * repository explicitly (GIT_DIR), whatever the agent put in the folder.
   */
  asAgent?: boolean;
}

/** A command in a session container; the user is always given explicitly. */
export async function exec(engine: Engine, container: string, command: string[], options: SessionExecOptions = {}): Promise<DockerResult> {
  const { root, asAgent, containerEnv, ...rest } = options;
  const env = asAgent ? (containerEnv ?? {}) : { GIT_DIR: AGENT_GIT_DIR, ...containerEnv };
  return engine.exec(container, command, { ...rest, containerEnv: env, user: root ? '0' : config.containerUser });
}

/** Gives the user's terminal to a command in the container; returns its exit code. */
export async function attach(engine: Engine, container: string, workdir: string, command: string[]): Promise<number> {
  const result = await exec(engine, container, command, { workdir, interactive: true, tty: true, allowFailure: true, timeoutMs: undefined, asAgent: true });
  return result.exitCode;
}

/** Reads a JSON object the agent's claude keeps; undefined when it is there but not an object para understands. */
function parseObject(text: string | undefined): Record<string, unknown> | undefined {
  if (text === undefined || text.trim() === '') return {};
  try {
    const data = JSON.parse(text) as unknown;
    return data && typeof data === 'object' && !Array.isArray(data) ? (data as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Writes ~/.claude.json and ~/.claude/settings.json (each by rename, as claude does), and the install link claude checks for. */
const PREPARE_CLAUDE = `set -e
umask 077
mkdir -p "$HOME/.claude"
head -c "$1" > "$HOME/.claude.json.para-tmp"
cat > "$HOME/.claude/settings.json.para-tmp"
mv -f "$HOME/.claude.json.para-tmp" "$HOME/.claude.json"
mv -f "$HOME/.claude/settings.json.para-tmp" "$HOME/.claude/settings.json"
if [ ! -e "$HOME/.local/bin/claude" ] && found="$(command -v claude)"; then mkdir -p "$HOME/.local/bin" && ln -sfn "$found" "$HOME/.local/bin/claude"; fi`;

/**
 * Readies the container's claude for a person at the terminal, so it opens on the prompt: the
 * folder trusted, no auto-update (the image is the install), the install-location check
 * satisfied, and with `bypass` the permissions-bypass warning accepted (the container is the
 * boundary). Two execs: one reads the files, one writes them.
 */
export async function prepareClaude(
  engine: Engine,
  container: string,
  worktree: string,
  permissions: 'bypass' | 'ask',
  userSettings: Record<string, unknown> = {},
  mcpServers: Record<string, unknown> = {},
  /** The last 20 characters of an API key claude finds in its environment (the broker's placeholder): accepted without asking. */
  approvedKey?: string,
): Promise<void> {
  const read = await exec(
    engine,
    container,
    ['sh', '-c', 'cat "$HOME/.claude.json" 2>/dev/null; printf "\\0"; cat "$HOME/.claude/settings.json" 2>/dev/null; true'],
    {
      allowFailure: true,
    },
  );
  const [claudeText, settingsText] = read.exitCode === 0 ? read.stdout.split('\0') : [undefined, undefined];
  const data = parseObject(claudeText);
  const found = parseObject(settingsText);
  // The user's carried preferences first, then what is already there, then para's own keys.
  const settings = found ? { ...userSettings, ...found } : undefined;
  // A file para does not understand is left alone: claude then asks instead.
  if (!data || !settings) return;
  const projects = (data.projects && typeof data.projects === 'object' ? data.projects : {}) as Record<string, Record<string, unknown>>;
  projects[worktree] = { ...(projects[worktree] ?? {}), hasTrustDialogAccepted: true, hasCompletedProjectOnboarding: true };
  data.projects = projects;
  data.hasCompletedOnboarding = true;
  if (approvedKey) {
    const responses = (data.customApiKeyResponses && typeof data.customApiKeyResponses === 'object' ? data.customApiKeyResponses : {}) as {
      approved?: unknown;
      rejected?: unknown;
    };
    const approved = Array.isArray(responses.approved) ? responses.approved : [];
    data.customApiKeyResponses = { ...responses, approved: [...new Set([...approved, approvedKey])], rejected: [] };
  }
  if (Object.keys(mcpServers).length) data.mcpServers = { ...((data.mcpServers as Record<string, unknown>) ?? {}), ...mcpServers };
  const env = (settings.env && typeof settings.env === 'object' ? settings.env : {}) as Record<string, unknown>;
  settings.env = { ...env, DISABLE_AUTOUPDATER: '1' };
  if (permissions === 'bypass') settings.skipDangerousModePermissionPrompt = true;
  const claudeJson = `${JSON.stringify(data, null, 2)}\n`;
  await exec(engine, container, ['sh', '-c', PREPARE_CLAUDE, 'para-prepare', String(Buffer.byteLength(claudeJson))], {
    input: `${claudeJson}${JSON.stringify(settings, null, 2)}\n`,
  });
}

/** Claude keeps a folder's conversations in <config dir>/projects/<path with every other character as "-">. */
export function conversationFolder(claudeConfigDir: string, worktree: string): string {
  return `${claudeConfigDir}/projects/${worktree.replace(/[^A-Za-z0-9]/g, '-')}`;
}

/** Whether claude in the container has a conversation to continue for this worktree. */
export async function hasConversation(engine: Engine, container: string, worktree: string): Promise<boolean> {
  const folder = conversationFolder(`${config.containerHome}/.claude`, worktree);
  const result = await exec(engine, container, ['sh', '-c', 'ls "$1"/*.jsonl >/dev/null 2>&1', 'para-conversation', folder], { allowFailure: true });
  return result.exitCode === 0;
}
