// Starting a session that exists resumes it: its container is started or re-created (a new image,
// a lost container), its egress proxy made to match, its work brought back, and the same command
// planned as for a new session. A resumed session stays on the engine it was started on.
import fs from 'fs-extra';
import os from 'node:os';
import { configDir } from '../image/credentials.ts';
import type { Engine } from '../engine/engine.ts';
import { ParaError, UsageError } from '../errors.ts';
import { conversationFolder, hasConversation, prepareClaude } from './container.ts';
import { jobProgress, startJob } from './job.ts';
import { sessionPaths } from './paths.ts';
import type { Repo } from '../repo.ts';
import {
  branchTip,
  createSessionContainer,
  removeSessionContainer,
  removeSessionVolume,
  Rollback,
  sessionContainer,
  sessionVolumeExists,
  startSessionContainer,
} from './resources.ts';
import { starterAlive, workTreeOf, writeSession, type SessionState } from './store.ts';
import { syncSession } from './sync.ts';
import { copyFiles, prepareEgress, removeEgress, sessionEgressOwner, type PreparedEgress } from './egress.ts';
import { createForwarder, createProxy, proxyHealth, startForwarder } from '../egress/proxy.ts';
import { recordedEgress, SESSION_PROXY_PORT, type EgressMode } from '../egress/rules.ts';
import { seedFromBundle, waitForRepository } from './transport.ts';
import { freshBroker } from '../broker/refresh.ts';
import { copyPlaceholder, planLogin } from './login.ts';

import { containerSpec, plannedCommand, requireImage, settle, type Preconditions, type StartRequest, type StartResult } from './request.ts';

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
async function ensureEgress(
  engine: Engine,
  repo: Repo,
  session: SessionState,
  prepared: PreparedEgress,
  request: Pick<StartRequest, 'warn' | 'invocation'>,
  rollback?: Rollback,
  broker?: { volume: string; socket: string },
): Promise<void> {
  const { warn, invocation } = request;
  const paths = sessionPaths(repo, session.name);
  const plan = prepared.plan ? await prepared.plan : null;
  if (!plan) {
    await removeEgress(engine, repo, paths);
    return;
  }
  const [container, proxy, forwarder] = await Promise.all([paths.container, paths.proxy, paths.forwarder].map((name) => engine.inspectContainer(name)));
  const same = JSON.stringify(recordedEgress(session).hosts) === JSON.stringify(prepared.state.hosts);
  if (same && proxyHealth(container, proxy, forwarder) === 'running') return;
  await removeEgress(engine, repo, paths);
  rollback?.add(`the egress proxy of ${session.name}`, () => removeEgress(engine, repo, paths));
  const owner = sessionEgressOwner(repo, paths, invocation, broker);
  await Promise.all([createProxy(engine, owner, plan), createForwarder(engine, owner, plan)]);
  await startForwarder(engine, owner, 'new');
  if (await forwarderHeld(engine, owner.forwarder)) return;
  // Something in the session holds 127.0.0.1:3128 (an agent can bind it once the forwarder is
  // gone): only a restart of the container ends every process of the agent.
  warn(`something in session ${session.name} held the proxy's port 127.0.0.1:${SESSION_PROXY_PORT}: its container is restarted (a running job ends)`);
  await engine.restartContainer(paths.container);
  await startForwarder(engine, owner, 'existing');
  if (!(await forwarderHeld(engine, owner.forwarder)))
    throw new ParaError(`the egress forwarder of session ${session.name} cannot start`, { code: 'egress-broken', hint: `docker logs ${owner.forwarder}` });
}

/** Whether the forwarder is still running a moment after its start (socat exits at once when its port is taken). */
async function forwarderHeld(engine: Engine, forwarder: string): Promise<boolean> {
  // A socat that cannot bind exits at once; the forwarder's wrapper (with the broker) sees that within 0.2 s.
  await new Promise((resolve) => setTimeout(resolve, 600));
  return Boolean((await engine.inspectContainer(forwarder))?.State.Running);
}

export async function resume(engine: Engine, request: StartRequest, existing: SessionState, pre: Preconditions): Promise<StartResult> {
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
    const switching = request.imageExplicit && request.image !== session.image;
    const image = switching ? request.image : (session.image ?? request.image);
    // A brokered session: its broker is brought back if it is down, and serves the login image's latest login.
    const login =
      session.credentials === 'broker'
        ? await planLogin(engine, 'broker', image, await engine.inspectImage(image), wanted.mode, session.network, request.warn)
        : { mode: 'image' as const, sessionImage: image };
    const egress = await prepareEgress(engine, repo, wanted.mode, wanted.allow, session.network, request.warn, login.mode === 'broker');
    if (login.loginImage) await freshBroker(engine, login.loginImage, session.network, request.warn);
    const found = await sessionContainer(engine, repo, paths);
    if (found.presence !== 'missing' && switching) {
      // The work stays: the folder is the host's and the agent's repository is in the volume.
      await startSessionContainer(engine, repo, paths);
      await syncSession(repo, session).catch((error: unknown) => request.warn(`could not bring the work back before switching images: ${String(error)}`));
      await removeSessionContainer(engine, repo, paths);
    }
    if (found.presence === 'missing' || switching) {
      await requireImage(image, image === request.image && pre.image ? pre.image : settle(engine.inspectImage(image)));
      const rollback = new Rollback();
      try {
        // The volume (kept, or made anew) holds the agent's repository; a new one starts from para/NAME.
        const tip = (await branchTip(repo, paths.ref)) ?? session.baseCommit;
        // A new volume starts from para/NAME (checked out: a remote one has no folder to read files from).
        const freshVolume = !(await sessionVolumeExists(engine, repo, paths));
        const spec = await containerSpec(
          repo,
          session,
          login.sessionImage,
          await pre.identity,
          { commit: tip, checkout: false },
          { ...egress, env: { ...egress.env, ...login.placeholder?.env } },
        );
        if (freshVolume) rollback.add(`the volume ${paths.volume}`, () => removeSessionVolume(engine, repo, paths));
        await createSessionContainer(engine, spec, rollback);
        await copyPlaceholder(engine, paths.container, login, await engine.inspectImage(image));
        if (session.engine?.remote) {
          await seedFromBundle(engine, paths.container, repo, paths, image);
          await copyFiles(engine, paths.container, egress.copies);
        }
        await ensureEgress(engine, repo, session, egress, request, rollback, login.forwarding);
      } catch (error) {
        await rollback.run(request.warn);
        throw error;
      }
      session.image = image;
    } else {
      await startSessionContainer(engine, repo, paths);
      await ensureEgress(engine, repo, session, egress, request, undefined, login.forwarding);
    }
    if (login.loginImage) session.brokerImage = login.loginImage;
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
      ? await hasConversation(engine, session.container, workTreeOf(session))
      : await fs.pathExists(conversationFolder(configDir(os.homedir(), process.env), paths.worktree)));
  // The session keeps its mode; --ask on a resume turns the prompts on from now.
  if (request.ask && session.permissions !== 'ask') {
    session.permissions = 'ask';
    await writeSession(repo, session);
  }
  const permissions = session.permissions ?? 'bypass';
  const { action, command } = plannedCommand(request, continues, permissions);
  if (action === 'attach' && session.container) {
    await waitForRepository(engine, session.container);
    await prepareClaude(engine, session.container, workTreeOf(session), permissions);
  }
  if (action === 'job' && session.container) await startResumedJob(engine, repo, session, command, request);
  return { session, resumed: true, action, command };
}

/** A background job in a resumed session, unless one is still running there. */
async function startResumedJob(engine: Engine, repo: Repo, session: SessionState, command: string[], request: StartRequest): Promise<void> {
  if (session.job && session.job.exitCode === null && (await jobProgress(engine, session.container!, session.job)).state === 'running') {
    throw new ParaError(`session ${session.name} already has a background job running`, {
      code: 'job-running',
      hint: `follow it: ${request.invocation('logs')} ${session.name} -f`,
    });
  }
  session.job = await startJob(engine, session.container!, workTreeOf(session), command);
  await writeSession(repo, session);
}
