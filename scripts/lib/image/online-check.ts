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

/** Runs the check; every container and volume it makes is removed, on success, failure and Ctrl-C. */
export async function onlineCheck(
  engine: Engine,
  image: string,
  options: { network: string | null; warn: (message: string) => void; now?: number },
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
  const remove = async () => {
    await engine.docker(['rm', '--force', owner.forwarder, owner.proxy, owner.container], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
    await engine.docker(['volume', 'rm', '--force', owner.egressVolume], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
  };
  const stopListening = onInterrupt(remove);
  try {
    const [{ plan }, ca] = await Promise.all([proxyPlan(engine, DEFAULT_ALLOWED_HOSTS, options.network, options.warn), extraCa(options.warn)]);
    // The check container idles until the proxy answers; claude then runs in it by exec.
    const env = { ...sessionProxyEnv(), ...ca.env, CLAUDE_CODE_MAX_RETRIES: '0' };
    const container = engine.run(
      {
        image,
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
    );
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
    return classify(result.exitCode, `${result.stdout}\n${result.stderr}`, log.stdout);
  } finally {
    await remove();
    stopListening();
  }
}
