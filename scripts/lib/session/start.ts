// Starting a session: branch, worktree folder, state and (with a container) the agent's volume,
// container and repository, with a rollback of everything this start created when a step fails
// or the process is interrupted. Starting an existing session resumes it.
import fs from 'fs-extra';
import os from 'node:os';
import { makeCommand } from '../cli.ts';
import { onInterrupt } from '../cleanup.ts';
import { config, labels } from '../config.ts';
import { configDir } from '../credentials.ts';
import { inspectContainer, inspectImage, restartContainer, type ImageInfo } from '../docker.ts';
import { DEFAULT_ENGINE, describeEngine, onEngine, sameEngine, type Engine } from '../engine.ts';
import { ParaError, UsageError } from '../errors.ts';
import { git, repoSnapshot, type RepoSnapshot } from '../git.ts';
import { imageUserIds } from '../image.ts';
import { ensureRepoImage } from '../repo-image.ts';
import { candidateName, nameFromPrompt } from '../names.ts';
import { conversationFolder, hasConversation, trustWorkspace, type ContainerSpec } from './container.ts';
import { jobProgress, startJob } from './job.ts';
import { isReservedName, sessionPaths, validateSessionName, type Repo } from './paths.ts';
import {
  addHostWorktree,
  branchTip,
  createBranch,
  createFolder,
  createSessionContainer,
  ensureParaDir,
  FolderExists,
  removeSessionContainer,
  removeSessionVolume,
  Rollback,
  sessionContainer,
  sessionVolumeExists,
  startSessionContainer,
} from './resources.ts';
import {
  createSessionExclusive,
  deleteSession,
  ensureStateDir,
  readSession,
  starterAlive,
  workTreeOf,
  writeSession,
  type Limits,
  type SessionState,
} from './store.ts';
import { syncSession } from './sync.ts';
import {
  copyFiles,
  createForwarder,
  createProxy,
  prepareEgress,
  proxyHealth,
  recordedEgress,
  removeEgress,
  sessionEgressOwner,
  SESSION_PROXY_PORT,
  startForwarder,
  type EgressMode,
  type PreparedEgress,
} from './egress.ts';
import { seedFromBundle, transportFor, waitForRepository } from './transport.ts';

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
  engine: Engine;
  /** Whether the engine was named explicitly (--context, --engine): a resume on another engine is then refused. */
  engineExplicit: boolean;
  limits: Limits;
  detach: boolean;
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

function plannedCommand(request: StartRequest, continueConversation: boolean): { action: StartAction; command: string[] } {
  if (request.command?.length) return { action: request.detach ? 'job' : 'attach', command: request.command };
  if (request.detach) {
    if (!request.prompt) return { action: 'none', command: [] };
    // Safe: the agent is not root and runs in its own container.
    return { action: 'job', command: ['claude', '-p', request.prompt, '--dangerously-skip-permissions'] };
  }
  const command = ['claude'];
  if (continueConversation) command.push('--continue');
  if (request.prompt) command.push(request.prompt);
  return { action: 'attach', command };
}

type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** A promise that never rejects, so a probe left running cannot become an unhandled rejection. */
function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

interface Preconditions {
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
}

function checkRequest(request: StartRequest): void {
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

/** What a start needs before it makes anything; a resume prepares its own egress. */
async function checkPreconditions(request: StartRequest, snapshot: RepoSnapshot, resuming: boolean): Promise<Preconditions> {
  const repo: Repo = { root: snapshot.root, commonDir: snapshot.commonDir };
  if (!snapshot.head) {
    throw new ParaError(`the repository ${repo.root} has no commit yet`, {
      code: 'no-commit',
      hint: 'make a first commit (git commit --allow-empty -m "initial"), then start again',
    });
  }
  // A repository with its own tools (.para/image) gets its own session image (its login from
  // PARA_IMAGE, default para-authenticated), unless --image names another.
  const own = request.container && !request.imageExplicit ? await ensureRepoImage(repo, { stream: request.tty, log: request.log ?? (() => undefined) }) : null;
  const imageName = own ?? request.image;
  const image = request.container ? settle(inspectImage(imageName)) : undefined;
  const identity = request.container ? gitIdentity(repo.root) : Promise.resolve([]);
  identity.catch(() => undefined);
  return {
    repo,
    head: snapshot.head,
    baseBranch: snapshot.branch ?? null,
    imageName,
    image,
    identity,
    egress: request.container && !resuming ? settle(newEgress(repo, request)) : undefined,
  };
}

function newEgress(repo: Repo, request: StartRequest): Promise<PreparedEgress> {
  return prepareEgress(repo, request.egress, request.allow, request.network ?? null, request.warn, request.engine.remote);
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

async function requireImage(image: string, probe: Promise<Settled<ImageInfo | undefined>>): Promise<ImageInfo> {
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

function warnOnUidMismatch(image: ImageInfo, name: string, warn: (m: string) => void): void {
  const uid = image.Config.Labels?.[labels.uid];
  const expected = String(imageUserIds().uid);
  if (uid && uid !== expected)
    warn(`${name} was built for UID ${uid}, you are ${expected}: files the agent writes will not be yours; run make image REBUILD_BASE=1`);
}

/** Reserves a session name by creating its state file; a derived name moves on to name-2, name-3... */
async function reserve(request: StartRequest, { repo, head, baseBranch }: Preconditions): Promise<{ state: SessionState; existing?: SessionState }> {
  const derived = request.name === undefined;
  const base = request.name ?? nameFromPrompt(request.prompt ?? '');
  for (let attempt = 1; attempt <= 100; attempt += 1) {
    const name = derived ? candidateName(base, attempt) : base;
    if (derived && (validateSessionName(name) || isReservedName(name))) continue;
    const paths = sessionPaths(repo, name);
    const state: SessionState = {
      version: 2,
      name,
      repo: repo.root,
      branch: paths.branch,
      baseBranch,
      baseCommit: head,
      worktree: paths.worktree,
      container: request.container ? paths.container : null,
      image: request.container ? request.image : null,
      network: request.container ? (request.network ?? null) : null,
      ...(request.container ? { egress: { mode: request.egress, allow: request.allow, hosts: [], upstream: null }, engine: request.engine } : {}),
      limits: request.container ? request.limits : null,
      prompt: request.prompt ?? null,
      createdAt: new Date().toISOString(),
      status: 'starting',
      pid: process.pid,
      job: null,
    };
    if (derived && ((await branchTip(repo, paths.ref)) !== null || (await fs.pathExists(paths.worktree)))) continue;
    if (await createSessionExclusive(repo, state)) return { state };
    if (derived) continue;
    const existing = await readSession(repo, name);
    if (!existing) continue; // removed in between: try again
    // A finished session whose branch the user has merged and deleted is only a record: the name is free again.
    if (existing.status === 'finished' && !(await branchTip(repo, paths.ref))) {
      await deleteSession(repo, name);
      continue;
    }
    return { state, existing };
  }
  throw new ParaError(`could not find a free session name for ${base}`, { hint: 'give a name explicitly' });
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

/** The recorded egress of a session, with this request's extra --allow hosts. */
function resumedEgress(request: StartRequest, session: SessionState): { mode: EgressMode; allow: string[] } {
  const recorded = recordedEgress(session);
  if (request.egressExplicit && request.egress !== recorded.mode) {
    throw new UsageError(
      `session ${session.name} was started with --egress ${recorded.mode}; a session keeps its egress mode`,
      `start it without --egress, or finish it and start a new session with --egress ${request.egress}`,
    );
  }
  return { mode: recorded.mode, allow: [...new Set([...recorded.allow, ...request.allow])] };
}

/**
 * Makes the session's proxy and forwarder match its container: (re)created when either is not
 * running, the forwarder predates the container's latest start, or the allowlist changed.
 */
async function ensureEgress(repo: Repo, session: SessionState, prepared: PreparedEgress, warn: (message: string) => void, rollback?: Rollback): Promise<void> {
  const paths = sessionPaths(repo, session.name);
  if (!prepared.plan) {
    await removeEgress(repo, paths);
    return;
  }
  const [container, proxy, forwarder] = await Promise.all([paths.container, paths.proxy, paths.forwarder].map((name) => inspectContainer(name)));
  const same = JSON.stringify(recordedEgress(session).hosts) === JSON.stringify(prepared.state.hosts);
  if (same && proxyHealth(container, proxy, forwarder) === 'running') return;
  await removeEgress(repo, paths);
  rollback?.add(`the egress proxy of ${session.name}`, () => removeEgress(repo, paths));
  const owner = sessionEgressOwner(repo, paths);
  await Promise.all([createProxy(owner, prepared.plan), createForwarder(owner, prepared.plan)]);
  await startForwarder(owner, 'new');
  if (await forwarderHeld(owner.forwarder)) return;
  // Something in the session holds 127.0.0.1:3128 (an agent can bind it once the forwarder is
  // gone): only a restart of the container ends every process of the agent.
  warn(`something in session ${session.name} held the proxy's port 127.0.0.1:${SESSION_PROXY_PORT}: its container is restarted (a running job ends)`);
  await restartContainer(paths.container);
  await startForwarder(owner, 'existing');
  if (!(await forwarderHeld(owner.forwarder)))
    throw new ParaError(`the egress forwarder of session ${session.name} cannot start`, { code: 'egress-broken', hint: `docker logs ${owner.forwarder}` });
}

/** Whether the forwarder is still running a moment after its start (socat exits at once when its port is taken). */
async function forwarderHeld(forwarder: string): Promise<boolean> {
  await new Promise((resolve) => setTimeout(resolve, 300));
  return Boolean((await inspectContainer(forwarder))?.State.Running);
}

async function resume(request: StartRequest, existing: SessionState, pre: Preconditions): Promise<StartResult> {
  const { repo } = pre;
  const clean = request.invocation('clean');
  if (existing.status === 'starting') {
    if (starterAlive(existing)) {
      throw new ParaError(`session ${existing.name} is being started by another process (pid ${existing.pid})`, {
        code: 'session-busy',
        hint: 'wait for it to finish, then start again to attach',
      });
    }
    throw new ParaError(`session ${existing.name} was left half-started by an interrupted run`, {
      code: 'session-stale',
      hint: `run: ${clean} (or ${request.invocation('cancel')} ${existing.name})`,
    });
  }
  if (existing.status === 'finished') {
    throw new ParaError(`session ${existing.name} is finished; its branch ${existing.branch} is kept`, {
      code: 'session-finished',
      hint: `choose another name (the branch ${existing.branch} holds its work)`,
    });
  }
  const paths = sessionPaths(repo, existing.name);
  // A remote session has no host folder: its files are in its volume.
  if (!existing.engine?.remote && !(await fs.lstat(paths.worktree).catch(() => undefined))?.isDirectory()) {
    throw new ParaError(`the worktree folder of session ${existing.name} is missing (${paths.worktree})`, {
      code: 'worktree-missing',
      hint: `run: ${request.invocation('cancel')} ${existing.name} --force (its branch is archived)`,
    });
  }
  const session: SessionState = { ...existing };
  if (request.container && existing.container === null) {
    throw new UsageError(`session ${existing.name} was started without a container`, `finish or cancel it, then start a new session with --container`);
  }
  if (session.container) {
    const wanted = resumedEgress(request, session);
    const egress = await prepareEgress(repo, wanted.mode, wanted.allow, session.network, request.warn, Boolean(session.engine?.remote));
    const switching = request.imageExplicit && request.image !== session.image;
    const image = switching ? request.image : (session.image ?? request.image);
    const found = await sessionContainer(repo, paths);
    if (found.presence !== 'missing' && switching) {
      // The work stays: the folder is the host's and the agent's repository is in the volume.
      await startSessionContainer(repo, paths);
      await syncSession(repo, session).catch((error: unknown) => request.warn(`could not bring the work back before switching images: ${String(error)}`));
      await removeSessionContainer(repo, paths);
    }
    if (found.presence === 'missing' || switching) {
      await requireImage(image, image === request.image && pre.image ? pre.image : settle(inspectImage(image)));
      const rollback = new Rollback();
      try {
        // The volume (kept, or made anew) holds the agent's repository; a new one starts from para/NAME.
        const tip = (await branchTip(repo, paths.ref)) ?? session.baseCommit;
        // A new volume starts from para/NAME (checked out: a remote one has no folder to read files from).
        const freshVolume = !(await sessionVolumeExists(repo, paths));
        const spec = await containerSpec(repo, session, image, await pre.identity, { commit: tip, checkout: false }, egress);
        if (freshVolume) rollback.add(`the volume ${paths.volume}`, () => removeSessionVolume(repo, paths));
        await createSessionContainer(spec, rollback);
        if (session.engine?.remote) {
          await seedFromBundle(paths.container, repo, paths, image);
          await copyFiles(paths.container, egress.copies);
        }
        await ensureEgress(repo, session, egress, request.warn, rollback);
      } catch (error) {
        await rollback.run(request.warn);
        throw error;
      }
      session.image = image;
    } else {
      await startSessionContainer(repo, paths);
      await ensureEgress(repo, session, egress, request.warn);
    }
    session.egress = egress.state;
    await writeSession(repo, session);
    await syncSession(repo, session).catch((error: unknown) =>
      request.warn(`could not bring the session's commits back: ${error instanceof Error ? error.message : String(error)}`),
    );
  }
  const continues =
    !request.command?.length &&
    !request.detach &&
    (session.container
      ? await hasConversation(session.container, workTreeOf(session))
      : await fs.pathExists(conversationFolder(configDir(os.homedir(), process.env), paths.worktree)));
  const { action, command } = plannedCommand(request, continues);
  if (action === 'attach' && session.container) await waitForRepository(session.container);
  if (action === 'job' && session.container) await startResumedJob(repo, session, command, request);
  return { session, resumed: true, action, command };
}

/** Starts or resumes a session; every docker call goes to the session's engine (a resumed one stays on its own). */
export async function startSession(request: StartRequest): Promise<StartResult> {
  checkRequest(request);
  const snapshot = await repoSnapshot(request.cwd);
  const existing =
    request.name === undefined ? undefined : await readSession({ root: snapshot.root, commonDir: snapshot.commonDir }, request.name).catch(() => undefined);
  let engine = request.engine;
  if (existing?.container) {
    const recorded = existing.engine ?? DEFAULT_ENGINE;
    if (request.engineExplicit && !sameEngine(recorded, request.engine)) {
      throw new UsageError(
        `session ${request.name} lives on ${describeEngine(recorded)}, not ${describeEngine(request.engine)}`,
        'start it again without --context or --engine: it goes back to its own engine',
      );
    }
    engine = recorded;
  }
  return onEngine(engine, () => startOnEngine({ ...request, engine }, snapshot, existing !== undefined));
}

async function startOnEngine(given: StartRequest, snapshot: RepoSnapshot, resuming: boolean): Promise<StartResult> {
  const pre = await checkPreconditions(given, snapshot, resuming);
  const request: StartRequest = { ...given, image: pre.imageName };
  const { repo, head } = pre;
  const rollback = new Rollback();
  let interrupted = false;
  let done = (): void => undefined;
  const finished = new Promise<void>((resolve) => {
    done = resolve;
  });
  // On Ctrl-C/SIGTERM the step in flight ends first (its git or docker child may still be
  // creating something); the next checkpoint then throws and the catch below rolls back.
  const stopListening = onInterrupt(() => {
    interrupted = true;
    return finished;
  });
  const checkpoint = (): void => {
    if (interrupted) throw new ParaError('interrupted: everything this start created was removed', { code: 'interrupted' });
  };
  try {
    await Promise.all([ensureParaDir(repo), ensureStateDir(repo)]);
    const { state, existing } = await reserve(request, pre);
    if (existing) return await resume(request, existing, pre);
    const paths = sessionPaths(repo, state.name);
    rollback.add('the state file', () => deleteSession(repo, state.name));
    checkpoint();
    try {
      if (!request.container) {
        if (await fs.lstat(paths.worktree).catch(() => undefined)) throw new FolderExists(paths.worktree);
        await createBranch(repo, paths, head, rollback);
        await addHostWorktree(repo, paths, rollback);
      } else {
        // The container makes the agent's repository itself as it starts; docker run creates the
        // volume with the session's labels. The branch is made meanwhile.
        // A session that was there when the start began and is gone now: its egress is prepared here.
        const prepared = await (pre.egress ?? settle(newEgress(repo, request)));
        if (!prepared.ok) throw prepared.error;
        const egress = prepared.value;
        state.egress = egress.state;
        const transport = transportFor(state.engine);
        // A remote engine cannot see a host folder: the agent's files live in its volume there.
        if (!transport.remote) await createFolder(paths, rollback, true);
        rollback.add(`the volume ${paths.volume}`, () => removeSessionVolume(repo, paths));
        const spec = await containerSpec(repo, state, request.image, await pre.identity, { commit: head, checkout: true }, egress);
        if (egress.plan) rollback.add(`the egress proxy of ${state.name}`, () => removeEgress(repo, paths));
        // The proxy starts beside the session container; the forwarder joins the container's network once it exists.
        // The forwarder starts as soon as the session container runs (it joins its network
        // namespace); the proxy, the longest step, starts meanwhile.
        const plan = egress.plan;
        const owner = sessionEgressOwner(repo, paths);
        const session = plan
          ? Promise.all([createSessionContainer(spec, rollback), createForwarder(owner, plan)]).then(() => startForwarder(owner, 'new'))
          : createSessionContainer(spec, rollback);
        const made = await Promise.allSettled([createBranch(repo, paths, head, rollback), session, plan ? createProxy(owner, plan) : Promise.resolve()]);
        // A missing image explains a failed docker run best, so it is reported first.
        warnOnUidMismatch(await requireImage(request.image, pre.image!), request.image, request.warn);
        const failed = made.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
        if (failed) throw failed.reason;
        if (transport.remote) {
          // The branch exists now: its history goes into the container as a bundle.
          await seedFromBundle(paths.container, repo, paths, request.image);
          await copyFiles(paths.container, egress.copies);
        }
        if (egress.state.mode === 'open') request.warn(`session ${state.name} has open egress: its agent can reach any address its network reaches`);
        checkpoint();
        if (!request.detach) {
          await waitForRepository(paths.container);
          await trustWorkspace(paths.container, workTreeOf(state));
        }
      }
    } catch (error) {
      if (error instanceof FolderExists) {
        throw new ParaError(`${error.folder} already exists and is not a para session's folder; para leaves it alone`, {
          code: 'worktree-exists',
          hint: `move it away or choose another name`,
        });
      }
      throw error;
    }
    checkpoint();
    const planned = plannedCommand(request, false);
    const session: SessionState = { ...state, status: 'active', pid: undefined };
    if (planned.action === 'job' && request.container) session.job = await startJob(paths.container, workTreeOf(session), planned.command);
    checkpoint();
    await writeSession(repo, session);
    checkpoint();
    return { session, resumed: false, action: planned.action, command: planned.command };
  } catch (error) {
    await rollback.run(request.warn);
    throw error;
  } finally {
    stopListening();
    done();
  }
}

/** A background job in a resumed session, unless one is still running there. */
async function startResumedJob(repo: Repo, session: SessionState, command: string[], request: StartRequest): Promise<void> {
  if (session.job && session.job.exitCode === null && (await jobProgress(session.container!, session.job)).state === 'running') {
    throw new ParaError(`session ${session.name} already has a background job running`, {
      code: 'job-running',
      hint: `follow it: ${request.invocation('logs')} ${session.name} -f`,
    });
  }
  session.job = await startJob(session.container!, workTreeOf(session), command);
  await writeSession(repo, session);
}
