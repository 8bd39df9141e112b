// Is the login real? One minimal real request (claude -p with the image's own credentials) from a
// throwaway container that reaches the outside only as a session does: through its own egress
// proxy, admitting the default allowlist. Tells apart: accepted, rejected, unreachable.
import { randomBytes } from 'node:crypto';
import { onInterrupt } from '../cleanup.ts';
import { config, labels, temporaryLabels } from '../config.ts';
import type { Engine } from '../engine/engine.ts';
import { ParaError } from '../errors.ts';
import { machineId, sweepLeftovers } from './sweep.ts';
import { createForwarder, createProxy, proxyPlan, startForwarder, type EgressOwner } from '../egress/proxy.ts';
import { DEFAULT_ALLOWED_HOSTS, sessionProxyEnv, WAIT_FOR_PROXY } from '../egress/rules.ts';
import { extraCa } from '../egress/ca.ts';
import { brokerForwarding, brokerReachedApi, type CredentialsMode, ensureBroker, ownBrokerNames } from '../broker/broker.ts';
import { copyPlaceholder, planLogin } from '../session/login.ts';
import { tarArchive } from '../tar.ts';

export type OnlineOutcome = 'accepted' | 'rejected' | 'unreachable' | 'failed';

export interface OnlineVerdict {
  outcome: OnlineOutcome;
  /** What claude said (its last line), or why the check could not tell. Never a credential. */
  detail: string;
}

/** Words claude prints when the API or the login service turned the credentials down. */
const REJECTED = /invalid api key|not logged in|please run \/login|authentication|oauth token|revoked|\b401\b|\b403\b|unauthorized|forbidden|expired/i;

/** Whether the proxy's log shows a tunnel to the API that was let through and opened. */
function reachedApi(proxyLog: string): boolean {
  return /CONNECT api\.anthropic\.com:443 200 TCP_TUNNEL/.test(proxyLog);
}

export function classify(exitCode: number, output: string, proxyLog: string): OnlineVerdict {
  const last = output.trim().split('\n').filter(Boolean).pop()?.slice(0, 300) ?? '';
  if (exitCode === 0) return { outcome: 'accepted', detail: last || 'claude answered' };
  if (!reachedApi(proxyLog)) return { outcome: 'unreachable', detail: last || 'no connection to api.anthropic.com went through' };
  if (REJECTED.test(output)) return { outcome: 'rejected', detail: last };
  return { outcome: 'failed', detail: last || `claude exited with ${exitCode}` };
}

/**
 * Refuses a check that would make claude refresh a subscription login: refresh tokens are single
 * use, so the container's refresh would log the host (and the image) out.
 */
async function assertNoRefresh(engine: Engine, image: string, now: number): Promise<void> {
  const l = (await engine.inspectImage(image))?.Config.Labels ?? {};
  const expires = Date.parse(l[labels.credentialsExpiresAt] ?? '');
  if (l[labels.credentialsSource] === 'subscription' && Number.isFinite(expires) && expires <= now + 60_000) {
    throw new ParaError(`the access token in ${image} has expired: an online check would refresh it, which logs your host out`, {
      code: 'online-check-refused',
      hint: 'run claude on the host (it refreshes there), then make image again',
    });
  }
}

/**
 * Runs the check; every container and volume it makes is removed, on success, failure and Ctrl-C.
 * With the broker (the default credentials mode) the request takes the sessions' way: claude holds
 * a placeholder and its request goes through a credential broker: the engine's own (`shared`, the
 * doctor), or one of the check's own (an image not yet tagged, make image VERIFY=online).
 */
export async function onlineCheck(
  engine: Engine,
  image: string,
  options: { network: string | null; warn: (message: string) => void; now?: number; credentials?: CredentialsMode; broker?: 'shared' | 'own' },
): Promise<OnlineVerdict> {
  await assertNoRefresh(engine, image, options.now ?? Date.now());
  await sweepLeftovers(engine);
  const base = `para-check-${machineId()}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const owner: EgressOwner = {
    container: base,
    proxy: `${base}-proxy`,
    forwarder: `${base}-forward`,
    egressVolume: `${base}-egress`,
    labels: temporaryLabels('online-check'),
  };
  const login = await planLogin(
    engine,
    options.credentials ?? config.credentialsMode,
    image,
    await engine.inspectImage(image),
    'allowlist',
    options.network,
    options.warn,
  );
  const own = login.mode === 'broker' && options.broker === 'own' ? ownBrokerNames(`${base}-broker`) : undefined;
  if (login.mode === 'broker') owner.broker = own ? brokerForwarding(options.network, image, own.container) : login.forwarding;
  const remove = async () => {
    const containers = [owner.forwarder, owner.proxy, owner.container, ...(own ? [own.container] : [])];
    await engine.docker(['rm', '--force', ...containers], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
    await engine.docker(['volume', 'rm', '--force', owner.egressVolume, ...(own ? [own.volume] : [])], {
      allowFailure: true,
      timeoutMs: config.timeouts.dockerQuickMs,
    });
  };
  const stopListening = onInterrupt(remove);
  try {
    const since = new Date().toISOString();
    const [{ plan }, ca, broker] = await Promise.all([
      proxyPlan(engine, DEFAULT_ALLOWED_HOSTS, options.network, options.warn, login.mode === 'broker'),
      extraCa(options.warn),
      login.loginImage ? ensureBroker(engine, login.loginImage, options.network, own ? { own: { name: own.container, labels: owner.labels } } : {}) : undefined,
    ]);
    // The check container idles until the proxy answers; claude then runs in it by exec.
    const env = { ...sessionProxyEnv(), ...ca.env, ...(login.placeholder?.env ?? {}), CLAUDE_CODE_MAX_RETRIES: '0' };
    const container = engine
      .run(
        {
          image: login.sessionImage,
          name: owner.container,
          labels: owner.labels,
          init: true,
          network: 'none',
          noNewPrivileges: true,
          capabilities: { drop: 'ALL', add: [] },
          env,
          mounts: ca.mounts,
          entrypoint: 'sleep',
          command: ['300'],
        },
        { detach: true },
      )
      .then(async (made) => {
        await copyPlaceholder(engine, owner.container, login, await engine.inspectImage(login.sessionImage));
        // An API key claude finds in its environment is used once accepted; a session's start records that, so does the check.
        const key = login.placeholder?.approvedKey;
        if (key) {
          const info = await engine.inspectImage(login.sessionImage);
          const ids = { uid: Number(info?.Config.Labels?.[labels.uid] ?? 0), gid: Number(info?.Config.Labels?.[labels.gid] ?? 0) };
          const content = `${JSON.stringify({ hasCompletedOnboarding: true, customApiKeyResponses: { approved: [key], rejected: [] } })}\n`;
          await engine.copyIn(owner.container, `${config.containerHome}/`, tarArchive([{ path: '.claude.json', mode: 0o600, content }], ids));
        }
        return made;
      });
    await Promise.all([
      Promise.all([container, createForwarder(engine, owner, plan)]).then(() => startForwarder(engine, owner, 'new')),
      createProxy(engine, owner, plan),
    ]);
    await engine.docker(['exec', owner.container, 'bash', '-c', WAIT_FOR_PROXY], { timeoutMs: config.timeouts.dockerRunMs });
    const result = await engine.docker(['exec', owner.container, 'claude', '-p', 'Reply with the single word OK.', '--model', 'haiku'], {
      allowFailure: true,
      timeoutMs: config.timeouts.verifyMs,
    });
    const log = await engine.docker(['logs', owner.proxy], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
    // Through the broker, the API is reached by the broker: its log says whether a request went through.
    const reached = broker ? ((await brokerReachedApi(engine, broker.container, since)) ? 'CONNECT api.anthropic.com:443 200 TCP_TUNNEL' : '') : log.stdout;
    return classify(result.exitCode, `${result.stdout}\n${result.stderr}`, reached);
  } finally {
    await remove();
    stopListening();
  }
}
