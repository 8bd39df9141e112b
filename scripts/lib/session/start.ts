// Starting a session: branch, worktree folder, state and (with a container) the agent's volume,
// container and repository, with a rollback of everything this start created when a step fails
// or the process is interrupted. Starting an existing session resumes it.
import fs from 'fs-extra';
import { onInterrupt } from '../cleanup.ts';
import { engineFor, type Engine } from '../engine/engine.ts';
import { DEFAULT_ENGINE, describeEngine, sameEngine } from '../engine/target.ts';
import { ParaError, UsageError } from '../errors.ts';
import { repoSnapshot, type RepoSnapshot } from '../git.ts';
import { ensureRepoImage } from '../image/repo-image.ts';
import { candidateName, nameFromPrompt } from './names.ts';
import { prepareClaude } from './container.ts';
import { copyUserConfig } from './user-config.ts';
import { startJob } from './job.ts';
import { isReservedName, sessionPaths, validateSessionName } from './paths.ts';
import type { Repo } from '../repo.ts';
import {
  addHostWorktree,
  branchTip,
  createBranch,
  createFolder,
  createSessionContainer,
  ensureParaDir,
  FolderExists,
  removeSessionVolume,
  Rollback,
} from './resources.ts';
import { createSessionExclusive, deleteSession, ensureStateDir, readSession, workTreeOf, writeSession, type SessionState } from './store.ts';
import { copyFiles, prepareEgress, removeEgress, sessionEgressOwner, type PreparedEgress } from './egress.ts';
import { createForwarder, createProxy, startForwarder } from '../egress/proxy.ts';
import { seedFromBundle, transportFor, waitForRepository } from './transport.ts';
import { ensureBroker } from '../broker/broker.ts';
import { freshBroker } from '../broker/refresh.ts';
import { copyPlaceholder, planLogin } from './login.ts';

import {
  checkRequest,
  containerSpec,
  gitIdentity,
  plannedCommand,
  requireImage,
  settle,
  warnOnUidMismatch,
  type Preconditions,
  type StartRequest,
  type StartResult,
} from './request.ts';
import { resume } from './resume.ts';

/** What a start needs before it makes anything; a resume prepares its own egress. */
/** A session's runtime must be one the engine offers: never a silent fallback to the default. */
async function requireRuntime(engine: Engine, runtime: string): Promise<void> {
  const offered = await engine.runtimes();
  if (offered.includes(runtime)) return;
  throw new ParaError(`${engine.describe()} has no runtime ${runtime} (it offers ${offered.join(', ') || 'none'})`, {
    code: 'runtime-missing',
    hint:
      runtime === 'runsc'
        ? 'install gVisor (Debian/Ubuntu: apt install runsc), register it in /etc/docker/daemon.json as {"runtimes":{"runsc":{"path":"/usr/bin/runsc","runtimeArgs":["--network=host"]}}}, then reload dockerd (kill -HUP its pid)'
        : `register ${runtime} with the engine (daemon.json "runtimes"), or start without --runtime`,
  });
}

async function checkPreconditions(engine: Engine, request: StartRequest, snapshot: RepoSnapshot, resuming: boolean): Promise<Preconditions> {
  const repo: Repo = { root: snapshot.root, commonDir: snapshot.commonDir };
  if (!snapshot.head) {
    throw new ParaError(`the repository ${repo.root} has no commit yet`, {
      code: 'no-commit',
      hint: 'make a first commit (git commit --allow-empty -m "initial"), then start again',
    });
  }
  if (request.container && engine.runtime) await requireRuntime(engine, engine.runtime);
  // A repository with its own tools (.para/image) gets its own session image (its login from
  // PARA_IMAGE, default para-authenticated), unless --image names another.
  const own =
    request.container && !request.imageExplicit
      ? await ensureRepoImage(engine, repo, {
          stream: request.tty,
          log: request.log ?? (() => undefined),
          withLogin: !(request.credentials === 'broker' && request.egress === 'allowlist'),
        })
      : null;
  const imageName = own ?? request.image;
  const image = request.container ? settle(engine.inspectImage(imageName)) : undefined;
  // The login decides the egress (a brokered session's proxy refuses the API's host); its errors surface where the container is made.
  const login = image?.then((probe) =>
    planLogin(engine, request.credentials, imageName, probe.ok ? probe.value : undefined, request.egress, request.network ?? null, request.warn),
  );
  login?.catch(() => undefined);
  const identity = request.container ? gitIdentity(repo.root) : Promise.resolve([]);
  identity.catch(() => undefined);
  return {
    repo,
    head: snapshot.head,
    baseBranch: snapshot.branch ?? null,
    imageName,
    image,
    identity,
    egress: request.container && !resuming && login ? settle(login.then((l) => newEgress(engine, repo, request, l.mode === 'broker'))) : undefined,
    login,
  };
}

function newEgress(engine: Engine, repo: Repo, request: StartRequest, brokered: boolean): Promise<PreparedEgress> {
  return prepareEgress(engine, repo, request.egress, request.allow, request.network ?? null, request.warn, brokered);
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
      ...(request.container
        ? {
            egress: { mode: request.egress, allow: request.allow, hosts: [], upstream: null },
            engine: request.engine,
            ...(request.runtime ? { runtime: request.runtime } : {}),
            permissions: request.ask ? 'ask' : 'bypass',
          }
        : {}),
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

/** Starts or resumes a session; every docker call goes to the session's engine (a resumed one stays on its own). */
export async function startSession(request: StartRequest): Promise<StartResult> {
  checkRequest(request);
  const snapshot = await repoSnapshot(request.cwd);
  const existing =
    request.name === undefined ? undefined : await readSession({ root: snapshot.root, commonDir: snapshot.commonDir }, request.name).catch(() => undefined);
  let target = request.engine;
  if (existing?.container) {
    const recorded = existing.engine ?? DEFAULT_ENGINE;
    if (request.engineExplicit && !sameEngine(recorded, request.engine)) {
      throw new UsageError(
        `session ${request.name} lives on ${describeEngine(recorded)}, not ${describeEngine(request.engine)}`,
        'start it again without --context or --engine: it goes back to its own engine',
      );
    }
    target = recorded;
    const runtime = existing.runtime ?? null;
    if (request.runtimeExplicit && request.runtime !== runtime) {
      throw new UsageError(
        `session ${request.name} runs under ${runtime ?? "the engine's default runtime"}; a session keeps its runtime`,
        'start it again without --runtime, or finish it and start a new session with the runtime you want',
      );
    }
    return startOnEngine(engineFor(target, { runtime }), { ...request, engine: target, runtime }, snapshot, true);
  }
  return startOnEngine(engineFor(target, { runtime: request.runtime }), { ...request, engine: target }, snapshot, existing !== undefined);
}

async function startOnEngine(engine: Engine, given: StartRequest, snapshot: RepoSnapshot, resuming: boolean): Promise<StartResult> {
  const pre = await checkPreconditions(engine, given, snapshot, resuming);
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
    if (existing) return await resume(engine, request, existing, pre);
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
        const login = await (pre.login ??
          planLogin(engine, request.credentials, request.image, undefined, request.egress, request.network ?? null, request.warn));
        const prepared = await (pre.egress ?? settle(newEgress(engine, repo, request, login.mode === 'broker')));
        if (!prepared.ok) throw prepared.error;
        const egress = prepared.value;
        state.egress = egress.state;
        const transport = transportFor(state.engine);
        // A remote engine cannot see a host folder: the agent's files live in its volume there.
        if (!transport.remote) await createFolder(paths, rollback, true);
        rollback.add(`the volume ${paths.volume}`, () => removeSessionVolume(engine, repo, paths));
        // The login: through the engine's broker (the container runs from the login image's credential-free base), or baked in.
        const probed = await pre.image!;
        const imageInfo = probed.ok ? probed.value : undefined;
        state.credentials = login.mode;
        if (login.loginImage) state.brokerImage = login.loginImage;
        const broker = login.mode === 'broker' ? freshBroker(engine, login.loginImage!, request.network ?? null, request.warn) : null;
        broker?.catch(() => undefined);
        const spec = await containerSpec(
          repo,
          state,
          login.sessionImage,
          await pre.identity,
          { commit: head, checkout: true },
          { ...egress, env: { ...egress.env, ...login.placeholder?.env } },
        );
        if (egress.plan) rollback.add(`the egress proxy of ${state.name}`, () => removeEgress(engine, repo, paths));
        // The proxy starts beside the session container; the forwarder joins the container's network once it exists.
        // The forwarder starts as soon as the session container runs (it joins its network
        // namespace); the proxy, the longest step, starts meanwhile.
        const plan = egress.plan;
        const owner = sessionEgressOwner(repo, paths, request.invocation, login.forwarding);
        // Nothing waits for the proxy's plan (its image, the Docker host's addresses) but the proxy and the forwarder.
        const session = plan
          ? Promise.all([
              createSessionContainer(engine, spec, rollback),
              // The forwarder mounts the broker's socket volume: made once the broker (and its volume) exists.
              Promise.all([plan, broker]).then(([p]) => createForwarder(engine, owner, p)),
            ]).then(() => startForwarder(engine, owner, 'new'))
          : createSessionContainer(engine, spec, rollback);
        const made = await Promise.allSettled([
          createBranch(repo, paths, head, rollback),
          session,
          plan ? plan.then((p) => createProxy(engine, owner, p)) : Promise.resolve(),
        ]);
        // A missing image explains a failed docker run best, so it is reported first.
        warnOnUidMismatch(await requireImage(request.image, pre.image!), request.image, request.warn);
        const failed = made.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
        if (failed) throw failed.reason;
        // A para clean elsewhere may have removed the broker before this session's forwarder used it (it had no user yet): made again.
        if (broker) {
          const served = await broker;
          if (!(await engine.inspectContainer(served.container))?.State.Running) await ensureBroker(engine, login.loginImage!, request.network ?? null);
        }
        await copyPlaceholder(engine, paths.container, login, imageInfo);
        if (transport.remote) {
          // The branch exists now: its history goes into the container as a bundle.
          await seedFromBundle(engine, paths.container, repo, paths, request.image);
          await copyFiles(engine, paths.container, egress.copies);
        }
        if (egress.state.mode === 'open') request.warn(`session ${state.name} has open egress: its agent can reach any address its network reaches`);
        checkpoint();
        // The user's own Claude setup, before the agent has run at all (nothing in its home is the agent's yet).
        const carried = request.userConfig;
        if (carried) await copyUserConfig(engine, paths.container, carried);
        if (!request.detach || (carried && Object.keys({ ...carried.settings, ...carried.mcpServers }).length)) {
          if (!request.detach) await waitForRepository(engine, paths.container);
          await prepareClaude(
            engine,
            paths.container,
            workTreeOf(state),
            request.ask ? 'ask' : 'bypass',
            carried?.settings,
            carried?.mcpServers,
            login.placeholder?.approvedKey,
          );
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
    if (planned.action === 'job' && request.container) session.job = await startJob(engine, paths.container, workTreeOf(session), planned.command);
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
