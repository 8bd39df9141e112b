// Sessions check: this repository's containers against its session state files. Containers of
// other repositories are never looked at.
import type { ContainerInfo, VolumeInfo } from '../engine/engine.ts';
import { brokerImageOf, containerDisplayName, engineGroups, reconcile, type EngineGroup } from '../session/list.ts';
import { config, labels } from '../config.ts';
import { BROKER_PORT, brokerState, followHostLogin, followsHost, hex, servedSource } from '../broker/broker.ts';
import { renewBrokerLogins, renewedByPara } from '../broker/refresh.ts';
import { makeCommand } from '../cli.ts';
import { imageAuthStatus } from '../image/auth-status.ts';
import { probeProxy, proxyHealth } from '../egress/proxy.ts';
import { recordedEgress } from '../egress/rules.ts';
import { sessionPaths } from '../session/paths.ts';
import type { Repo } from '../repo.ts';
import { listSessions, type SessionState } from '../session/store.ts';
import { deadlines, type DoctorContext } from './context.ts';
import { fail, ok, skip, warn, type Check, type Finding } from './runner.ts';
import type { Engine } from '../engine/engine.ts';

const CLEAN_FIX = 'make clean-sessions (scripts/clean.ts; DRY_RUN=1 shows what it would remove)';
const MISSING_FIX = 'start each again to re-create its container (scripts/start.ts NAME --container), or cancel it (scripts/cancel.ts NAME)';

export interface SessionMismatch {
  /** Containers and volumes labelled for this repository that no live session claims (what clean.ts removes). */
  orphans: string[];
  /** Active sessions whose container no longer exists. */
  missing: string[];
}

/** The orphan rule of list.ts and clean.ts (reconcile), as sorted names. */
export function compareSessions(repo: Repo, sessions: SessionState[], containers: ContainerInfo[], volumes: VolumeInfo[] = []): SessionMismatch {
  const { unclaimed, unclaimedVolumes, missing } = reconcile(repo, sessions, containers, volumes);
  return { orphans: [...unclaimed.map(containerDisplayName), ...unclaimedVolumes.map((v) => v.Name)].sort(), missing: missing.map((s) => s.name).sort() };
}

function list(names: string[]): string {
  return names.length <= 5 ? names.join(', ') : `${names.slice(0, 5).join(', ')} and ${names.length - 5} more`;
}

export function sessionsFinding(
  repo: Repo,
  sessions: SessionState[],
  containers: ContainerInfo[],
  volumes: VolumeInfo[] = [],
  problems: string[] = [],
): Finding {
  const { orphans, missing } = compareSessions(repo, sessions, containers, volumes);
  const found: string[] = [...problems];
  const fixes: string[] = [];
  if (orphans.length) {
    found.push(
      `${orphans.length} container${orphans.length === 1 ? '' : 's'} or volume${orphans.length === 1 ? '' : 's'} with no live session (${list(orphans)})`,
    );
    fixes.push(CLEAN_FIX);
  }
  if (missing.length) {
    found.push(`${missing.length} active session${missing.length === 1 ? '' : 's'} whose container is gone (${list(missing)})`);
    fixes.push(MISSING_FIX);
  }
  if (problems.length) fixes.push('move the damaged state files away, then run make clean-sessions');
  if (found.length) return warn(found.join('; '), fixes.join('; '));
  return ok(
    `${sessions.length} session${sessions.length === 1 ? '' : 's'}, ${containers.length} container${containers.length === 1 ? '' : 's'}, nothing left over`,
  );
}

/** Each active container session's egress: allowlist sessions need a working proxy; open ones are said aloud. */
async function egressFinding(engine: Engine, repo: Repo, sessions: SessionState[], containers: ContainerInfo[]): Promise<Finding> {
  const byName = new Map(containers.map((c) => [containerDisplayName(c), c]));
  const active = sessions.filter((s) => s.status === 'active' && s.container);
  if (active.length === 0) return skip('no active container sessions');
  const broken: string[] = [];
  const open: string[] = [];
  let working = 0;
  let none = 0;
  await Promise.all(
    active.map(async (state) => {
      const egress = recordedEgress(state);
      if (egress.mode === 'open') open.push(state.name);
      if (egress.mode === 'none') none += 1;
      if (egress.mode !== 'allowlist') return;
      const paths = sessionPaths(repo, state.name);
      const container = byName.get(paths.container);
      if (!container?.State.Running) return; // a stopped session gets its proxy back when it starts
      const health = proxyHealth(container, byName.get(paths.proxy), byName.get(paths.forwarder));
      if (health !== 'running') {
        broken.push(`${state.name} (proxy ${health})`);
        return;
      }
      const probe = await probeProxy(engine, paths.container);
      if (probe.working) working += 1;
      else broken.push(`${state.name} (${probe.detail})`);
    }),
  );
  const summary = `${working} allowlist session${working === 1 ? '' : 's'} with a working proxy${none ? `, ${none} without network` : ''}`;
  const found: string[] = [];
  const fixes: string[] = [];
  if (broken.length) {
    found.push(`the egress proxy of ${list(broken.sort())} does not work: its agent cannot reach the allowed hosts`);
    fixes.push('start each again to re-create its proxy (scripts/start.ts NAME --container)');
  }
  if (open.length) {
    found.push(`${list(open.sort())} ${open.length === 1 ? 'has' : 'have'} OPEN egress: the agent can reach any address`);
    fixes.push('if that was not meant, finish them and start again without --egress open');
  }
  if (found.length) return warn(`${summary}; ${found.join('; ')}`, fixes.join('; '));
  return ok(summary);
}

/**
 * The credential brokers this repository's running sessions use: each running, serving its login
 * image's current login (not expired), and reachable from a session through its forwarder (squid
 * refuses a path it never forwards: that 403 proves the whole way). Sessions that hold the login
 * themselves (--credentials image) are named.
 */
async function brokerFinding(engine: Engine, sessions: SessionState[], containers: ContainerInfo[]): Promise<Finding> {
  const running = new Set(containers.filter((c) => c.State.Running).map(containerDisplayName));
  const active = sessions.filter((s) => s.status === 'active' && s.container && running.has(s.container));
  const baked = active.filter((s) => s.credentials !== 'broker' && recordedEgress(s).mode !== 'none').map((s) => s.name);
  const brokered = active.filter((s) => s.credentials === 'broker');
  if (brokered.length === 0 && baked.length === 0) return skip('no running session reaches the API');
  const byBroker = new Map<string, SessionState[]>();
  for (const s of brokered) {
    const key = JSON.stringify([s.network, brokerImageOf(s)]);
    byBroker.set(key, [...(byBroker.get(key) ?? []), s]);
  }
  const found: string[] = [];
  const fixes: string[] = [];
  const fine: string[] = [];
  // A login the host renewed since make image reaches its brokers first (follow the host), as list does.
  const { moved, host } = await followHostLogin(engine).catch(() => ({ moved: [] as string[], host: undefined }));
  // A make login login is para's to renew: renewed here when due, as list does.
  const renewals = new Map((await renewBrokerLogins(engine).catch(() => [])).map((r) => [r.image, r]));
  for (const [key, users] of byBroker) {
    const [network, image] = JSON.parse(key) as [string | null, string];
    const state = await brokerState(engine, network, image);
    const info = await engine.inspectImage(image);
    const names = list(users.map((u) => u.name));
    if (state.state !== 'running') {
      found.push(`the credential broker ${state.container} is ${state.state} (sessions ${names} cannot reach the API)`);
      fixes.push(`start any session again (${makeCommand('start')} NAME --container) to bring it back`);
      continue;
    }
    const following = info ? followsHost(info, host) : undefined;
    const expires = following?.expiresAt ?? Date.parse(info?.Config.Labels?.[labels.credentialsExpiresAt] ?? '');
    if (info && state.source !== servedSource(info.Id, following)) {
      found.push(`the credential broker ${state.container} serves an older login than ${image}`);
      fixes.push(`start any session again, or run ${makeCommand('image')}: it brings the new login to the broker`);
      continue;
    }
    const renewal = renewals.get(image);
    if (renewal?.skipped) {
      found.push(
        `para could not renew the login in ${image} (its broker ${state.container} serves it until ${new Date(expires).toISOString()}): ${renewal.skipped}`,
      );
      fixes.push(`run ${makeCommand('login')} again, or use a setup-token: ${makeCommand('image', { TOKEN_FILE: '<file>' })}`);
      continue;
    }
    if (Number.isFinite(expires) && expires <= Date.now()) {
      found.push(`the login the credential broker ${state.container} serves expired at ${new Date(expires).toISOString()}`);
      fixes.push(
        info?.Config.Labels?.[labels.credentialsSource] === 'subscription'
          ? `run claude on the host once (it renews its own login; para brings the new one to the broker at the next list, watch or start); or use a setup-token: ${makeCommand('image', { TOKEN_FILE: '<file>' })}`
          : `run ${makeCommand('image')} (or ${makeCommand('login')}) again; or use a setup-token: ${makeCommand('image', { TOKEN_FILE: '<file>' })}`,
      );
      continue;
    }
    // Who listens on the broker's port, from the kernel's table (the agent cannot forge it): the forwarder's user only. Then a request through it.
    const port = `0100007F:${hex(BROKER_PORT)}`;
    const probe = `awk '$2 == "${port}" && $4 == "0A" { print "listener " $8 }' /proc/net/tcp; exec 3<>/dev/tcp/127.0.0.1/${BROKER_PORT} || exit 3; printf 'GET /para-doctor HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3; timeout 5 head -n 1 <&3`;
    const answer = await engine.exec(users[0].container!, ['bash', '-c', probe], { user: config.containerUser, allowFailure: true, timeoutMs: 15_000 });
    const forwarderUid = (await engine.inspectImage(config.egressImage))?.Config.Labels?.[labels.egressUser]?.split(':')[0];
    const listeners = [...answer.stdout.matchAll(/^listener (\d+)$/gm)].map((m) => m[1]);
    // An empty table is gVisor's view of its sandbox (its sockets are not listed): the request alone tells there.
    if (listeners.some((uid) => uid !== forwarderUid)) {
      found.push(
        `in session ${users[0].name}, 127.0.0.1:${BROKER_PORT} is held by ${listeners.length ? `uid ${listeners.join(', ')}` : 'nothing'}, not by its forwarder`,
      );
      fixes.push(`start it again (${makeCommand('start')} ${users[0].name} --container); it restarts the container when something else holds the port`);
      continue;
    }
    const reply = answer.stdout
      .split('\n')
      .filter((l) => !l.startsWith('listener '))
      .join('\n')
      .trim();
    if (!/^HTTP\/1\.[01] 403/.test(reply)) {
      found.push(`session ${users[0].name} cannot reach the credential broker ${state.container} (${reply || `exit code ${answer.exitCode}`})`);
      fixes.push(`start it again (${makeCommand('start')} ${users[0].name} --container) to re-create its forwarder`);
      continue;
    }
    const details = [
      `${users.length} session${users.length === 1 ? '' : 's'}`,
      ...(Number.isFinite(expires) ? [`login valid until ${new Date(expires).toISOString()}`] : []),
      ...(following ? [moved.includes(state.container) ? "it took the host's renewed login now" : "the host's renewed login"] : []),
      ...(renewedByPara(info) ? [renewal?.renewed !== undefined ? 'para renewed its login now' : 'para renews its login before it expires'] : []),
    ];
    fine.push(`${state.container} (${details.join(', ')})`);
  }
  if (baked.length) {
    found.push(
      `${list(baked.sort())} ${baked.length === 1 ? 'holds' : 'hold'} the login in ${baked.length === 1 ? 'its' : 'their'} image (--credentials image): anything in ${baked.length === 1 ? 'it' : 'them'} can read it`,
    );
    fixes.push('if that was not meant, finish them and start again without --credentials image');
  }
  const summary = fine.length ? `the login is held by the credential broker only: ${fine.join(', ')}` : 'no session uses a credential broker';
  if (found.length) return warn(`${summary}; ${found.join('; ')}`, fixes.join('; '));
  return ok(summary);
}

interface RepositorySessions {
  repo: Repo;
  problems: string[];
  /** The engines the sessions live on (the shell's own first), each with its sessions and resources. */
  groups: EngineGroup[];
}

/** This repository's sessions and labelled resources on every engine they use, read once per doctor run. */
const repositorySessions = new WeakMap<DoctorContext, Promise<RepositorySessions | undefined>>();

function readSessions(context: DoctorContext): Promise<RepositorySessions | undefined> {
  let found = repositorySessions.get(context);
  if (!found) {
    found = (async () => {
      const repo = await context.repo();
      if (!repo) return undefined;
      const state = await listSessions(repo);
      return { repo, problems: state.problems.map((p) => p.message), groups: await engineGroups(repo, state.sessions) };
    })();
    repositorySessions.set(context, found);
  }
  return found;
}

/** Each engine the sessions use: reachable, its sessions' images present and logged in, the proxy image there when needed. */
async function enginesFinding(groups: EngineGroup[]): Promise<Finding> {
  const used = groups.filter((g) => g.states.some((s) => s.container && s.status !== 'finished'));
  if (used.length === 0) return skip('no container session lives on any engine');
  const found: string[] = [];
  const fixes: string[] = [];
  const fine: string[] = [];
  for (const group of used) {
    const where = group.engine.describe();
    const target = group.engine.target;
    const live = group.states.filter((s) => s.container && s.status !== 'finished');
    if (group.unreachable) {
      found.push(`${where} cannot be reached (sessions ${list(live.map((s) => s.name))}): ${group.unreachable}`);
      fixes.push(target.context ? `docker --context ${target.context} info` : `DOCKER_HOST=${target.host ?? ''} docker info`);
      continue;
    }
    const { engine } = group;
    const problems = await (async () => {
      const out: string[] = [];
      for (const image of [...new Set(live.map((s) => s.image).filter((i): i is string => Boolean(i)))]) {
        if (!(await engine.inspectImage(image))) out.push(`the image ${image} is not there`);
        // The default engine's image is the image check's; another engine's is asked here.
        else if (group.engine.remote && !(await imageAuthStatus(engine, image, deadlines.containerMs).catch(() => undefined))?.loggedIn)
          out.push(`claude in ${image} is not logged in`);
      }
      if (live.some((s) => recordedEgress(s).mode === 'allowlist') && !(await engine.inspectImage(config.egressImage)))
        out.push(`the egress proxy image ${config.egressImage} is not there`);
      return out;
    })();
    if (problems.length) {
      found.push(`${where}: ${problems.join(', ')}`);
      fixes.push(target.context ? `make image CONTEXT=${target.context}` : `DOCKER_HOST=${target.host ?? ''} make image`);
    } else fine.push(`${where} (${live.length} session${live.length === 1 ? '' : 's'})`);
  }
  if (found.length) return fail(found.join('; '), fixes.join('; '));
  return ok(`reachable, with their images: ${fine.join(', ')}`);
}

/** A check over this repository's sessions (read once for all of them), skipped outside a repository. */
function sessionCheck(
  id: string,
  needs: string[],
  deadlineMs: () => number,
  finding: (found: RepositorySessions) => Promise<Finding> | Finding,
): Check<DoctorContext> {
  return {
    id,
    needs,
    get deadlineMs() {
      return deadlineMs();
    },
    run: async (context) => {
      const found = await readSessions(context);
      return found ? finding(found) : skip('not inside a git repository');
    },
  };
}

export const sessionChecks: Check<DoctorContext>[] = [
  sessionCheck(
    'sessions',
    ['docker-daemon', 'git'],
    () => deadlines.dockerMs,
    (found) => {
      const reachable = found.groups.filter((g) => !g.unreachable);
      return sessionsFinding(
        found.repo,
        reachable.flatMap((g) => g.states),
        reachable.flatMap((g) => g.containers),
        reachable.flatMap((g) => g.volumes),
        found.problems,
      );
    },
  ),
  sessionCheck(
    'engines',
    ['git'],
    () => deadlines.dockerMs + deadlines.containerMs,
    (found) => enginesFinding(found.groups),
  ),
  sessionCheck(
    'egress',
    ['docker-daemon', 'git'],
    () => deadlines.dockerMs,
    async (found) =>
      mergeFindings(await Promise.all(found.groups.filter((g) => !g.unreachable).map((g) => egressFinding(g.engine, found.repo, g.states, g.containers)))),
  ),
  sessionCheck(
    'credential-broker',
    ['docker-daemon', 'git'],
    () => deadlines.dockerMs,
    async (found) => mergeFindings(await Promise.all(found.groups.filter((g) => !g.unreachable).map((g) => brokerFinding(g.engine, g.states, g.containers)))),
  ),
];

/** One finding from several (one per engine): the worst status, the messages and fixes together. */
function mergeFindings(findings: Finding[]): Finding {
  const rank = { fail: 3, warn: 2, ok: 1, skip: 0 } as const;
  const shown = findings.filter((f) => f.status !== 'skip');
  if (shown.length === 0) return findings[0] ?? skip('no active container sessions');
  const worst = shown.reduce((a, b) => (rank[b.status] > rank[a.status] ? b : a));
  const message = shown.map((f) => f.message).join('; ');
  const fixes = shown
    .map((f) => f.fix)
    .filter(Boolean)
    .join('; ');
  return worst.status === 'ok' ? ok(message) : { status: worst.status, message, fix: fixes };
}
