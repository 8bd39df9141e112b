// What a start asks for, checked before anything is made, and what start and resume share: the
// command a session runs, the image it needs, and the session container's spec on its engine.
import { makeCommand } from '../cli.ts';
import { config, type CredentialsMode, labels } from '../config.ts';
import type { ImageInfo } from '../engine/engine.ts';
import type { EngineTarget } from '../engine/target.ts';
import { ParaError, UsageError } from '../errors.ts';
import { git } from '../git.ts';
import { imageUserIds } from '../image/build.ts';
import type { ContainerSpec } from './container.ts';
import { sessionPaths, validateSessionName } from './paths.ts';
import type { Repo } from '../repo.ts';
import { RUNTIME_NAME, type Limits, type SessionState } from './store.ts';
import type { PreparedEgress } from './egress.ts';
import type { SessionLogin } from './login.ts';
import type { EgressMode } from '../egress/rules.ts';
import { transportFor } from './transport.ts';
import type { PermissionMode } from './store.ts';
import type { UserConfig } from './user-config.ts';
import { AGENT_HOOK } from './agent-repo.ts';

export interface StartRequest {
  cwd: string;
  /** Explicit name; derived from the prompt when absent. */
  name?: string;
  prompt?: string;
  container: boolean;
  image: string;
  /** Whether --image was given (a resume then switches the session to it). */
  imageExplicit: boolean;
  /** The docker network the session reaches the outside through (the proxy's; the session's own with --egress open). */
  network?: string;
  egress: EgressMode;
  /** Whether --egress was given (a resume refuses to change it). */
  egressExplicit: boolean;
  /** Hosts added to the allowlist for this session (--allow). */
  allow: string[];
  /** The engine a new session goes to (--context, DOCKER_CONTEXT, DOCKER_HOST...); a resumed one stays on its own. */
  engine: EngineTarget;
  /** Whether the engine was named explicitly (--context, --engine): a resume on another engine is then refused. */
  engineExplicit: boolean;
  /** The OCI runtime for the session container (--runtime, PARA_RUNTIME; runsc: gVisor); null: the engine's default. */
  runtime: string | null;
  /** Whether --runtime was given (a resume refuses to change it). */
  runtimeExplicit: boolean;
  limits: Limits;
  detach: boolean;
  /** The user's Claude setup to carry into a new container session (absent: --no-user-config, or nothing to carry). */
  userConfig?: UserConfig;
  /** --ask: an attached claude keeps its permission prompts. */
  ask: boolean;
  /** --credentials (PARA_CREDENTIALS): broker (the default: the container holds no login) or image (baked in). */
  credentials: CredentialsMode;
  /** `-- CMD ARGS`: run this instead of claude. */
  command?: string[];
  /** Whether a terminal is attached (stdin and stdout). */
  tty: boolean;
  /** How the user runs para, for hints ("para", "npx tsx scripts/start.ts"...). */
  invocation: (verb: string) => string;
  warn: (message: string) => void;
  /** Progress (building the repository's image); absent: quiet. */
  log?: (message: string) => void;
}

export type StartAction = 'attach' | 'job' | 'none';

export interface StartResult {
  session: SessionState;
  resumed: boolean;
  action: StartAction;
  command: string[];
}

/**
 * What runs in the container. claude runs without permission prompts (the container is the
 * boundary), attached or not, unless the session asks for them (--ask).
 */
/** The hook events para listens to: each one records what the agent is doing (see session/agent-state.ts). */
export const HOOK_EVENTS = [
  'SessionStart',
  'UserPromptSubmit',
  'PreToolUse',
  'PostToolUse',
  'PostToolUseFailure',
  'PermissionRequest',
  'Elicitation',
  'Notification',
  'Stop',
  'StopFailure',
  'SessionEnd',
] as const;

/** Claude Code settings (given with --settings, so the user's own files stay as they are) that run para's hook on each event. */
export const HOOK_SETTINGS = JSON.stringify({
  hooks: Object.fromEntries(HOOK_EVENTS.map((event) => [event, [{ hooks: [{ type: 'command', command: `sh ${AGENT_HOOK} ${event}`, timeout: 5 }] }]])),
});

export function plannedCommand(
  request: StartRequest,
  continueConversation: boolean,
  permissions: PermissionMode = request.ask ? 'ask' : 'bypass',
): { action: StartAction; command: string[] } {
  if (request.command?.length) return { action: request.detach ? 'job' : 'attach', command: request.command };
  // In a container, claude reports what it is doing through para's hook (on the host there is none).
  const hooks = request.container ? ['--settings', HOOK_SETTINGS] : [];
  if (request.detach) {
    if (!request.prompt) return { action: 'none', command: [] };
    // Safe: the agent is not root and runs in its own container.
    return { action: 'job', command: ['claude', ...hooks, '-p', request.prompt, '--dangerously-skip-permissions'] };
  }
  const command = ['claude', ...hooks];
  if (permissions === 'bypass') command.push('--dangerously-skip-permissions');
  if (continueConversation) command.push('--continue');
  if (request.prompt) command.push(request.prompt);
  return { action: 'attach', command };
}

export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** A promise that never rejects, so a probe left running cannot become an unhandled rejection. */
export function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

export interface Preconditions {
  repo: Repo;
  head: string;
  baseBranch: string | null;
  /** The image a new container is made from: --image, else the repository's own, else PARA_IMAGE's. */
  imageName: string;
  image?: Promise<Settled<ImageInfo | undefined>>;
  /** Read while the session is reserved; needed only by docker run. */
  identity: Promise<Array<[string, string]>>;
  /** The new session's egress (checked before anything is made). */
  egress?: Promise<Settled<PreparedEgress>>;
  /** How the new session gets the login (decides the egress: a brokered session's proxy refuses the API's host). */
  login?: Promise<SessionLogin>;
}

export function checkRequest(request: StartRequest): void {
  if (request.name !== undefined) {
    const problem = validateSessionName(request.name);
    if (problem) throw new UsageError(problem);
  }
  const imageFrom = request.imageExplicit ? '--image' : 'PARA_IMAGE';
  for (const [flag, value] of [
    [imageFrom, request.image],
    ['--network', request.network],
  ] as const) {
    if (value !== undefined && (value.startsWith('-') || value.trim() === '' || /\s/.test(value))) {
      throw new UsageError(
        `${flag} ${JSON.stringify(value)} is not a valid value`,
        `give a name such as ${flag === '--network' ? 'none' : 'para-authenticated:latest'}`,
      );
    }
  }
  // The host's network, or another container's, would undo the container's isolation (the proxy
  // alone may sit on the host's network: it is not the agent's).
  if ((request.network === 'host' && request.egress === 'open') || request.network?.startsWith('container:')) {
    throw new UsageError(
      `--network ${request.network} would give the agent the ${request.network === 'host' ? "host's" : "other container's"} network`,
      'use none, or a docker network of your own',
    );
  }
  if (request.runtime !== null && !RUNTIME_NAME.test(request.runtime)) {
    throw new UsageError(`--runtime ${JSON.stringify(request.runtime)} is not a runtime name`, 'give the name the engine registers it under, such as runsc');
  }
  if (request.runtime !== null && !request.container) throw new UsageError('--runtime needs --container');
  // Settings from the environment are read now, so a bad one stops the start before anything is made.
  void [config.timeouts.dockerQuickMs, config.timeouts.buildMs, config.limits.pidsLimit];
  if (!request.container && request.command?.length) throw new UsageError('a command after -- needs --container');
  if (request.container && !request.detach && !request.tty) {
    throw new UsageError(
      'no terminal is attached, so an interactive session cannot start',
      'add --detach (with a prompt or -- CMD to run it in the background)',
    );
  }
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

export async function requireImage(image: string, probe: Promise<Settled<ImageInfo | undefined>>): Promise<ImageInfo> {
  const result = await probe;
  if (!result.ok) throw result.error;
  if (!result.value) {
    throw new ParaError(`the image ${image} does not exist`, {
      code: 'image-missing',
      hint: image === config.authenticatedImage ? `run: ${makeCommand('image')}` : `build it, or run: ${makeCommand('image', { TAG: image })}`,
    });
  }
  return result.value;
}

export function warnOnUidMismatch(image: ImageInfo, name: string, warn: (m: string) => void): void {
  const uid = image.Config.Labels?.[labels.uid];
  const expected = String(imageUserIds().uid);
  if (uid && uid !== expected)
    warn(`${name} was built for UID ${uid}, you are ${expected}: files the agent writes will not be yours; run make image REBUILD_BASE=1`);
}

/** The session container's docker run spec, on the session's engine: its transport decides mounts, seeding and work tree. */
export async function containerSpec(
  repo: Repo,
  state: SessionState,
  image: string,
  identity: Array<[string, string]>,
  seed: { commit: string; checkout: boolean },
  egress?: Pick<PreparedEgress, 'containerNetwork' | 'env' | 'mounts'>,
): Promise<ContainerSpec> {
  const transport = transportFor(state.engine);
  const paths = sessionPaths(repo, state.name);
  return {
    seed: transport.seedPlan(repo, paths, seed.commit, seed.checkout),
    repo,
    paths,
    image,
    // Without an egress (finish and cancel only read the agent's repository): no network.
    network: egress ? egress.containerNetwork : 'none',
    env: egress?.env ?? {},
    limits: state.limits ?? { memory: config.limits.memory, cpus: config.limits.cpus, pidsLimit: config.limits.pidsLimit },
    identity,
    mounts: [...(await transport.mounts(repo)), ...(egress?.mounts ?? [])],
    workTree: transport.workTree(paths),
  };
}
