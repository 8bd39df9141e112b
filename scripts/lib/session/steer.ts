// Steering a running session's egress: what its proxy refused and admitted (para egress), and
// more hosts admitted while it runs (para allow). The proxy's log lines name hosts the agent
// asked for: they are untrusted, parsed strictly and escaped by whoever prints them.
import { checkAllow, recordedEgress } from '../egress/rules.ts';
import { widenProxy } from '../egress/proxy.ts';
import { ParaError, UsageError } from '../errors.ts';
import { sessionPaths } from './paths.ts';
import { resolveSession, type Invocation } from './resolve.ts';
import type { Engine } from '../engine/engine.ts';
import { sessionEngine, writeSession } from './store.ts';

export interface AllowResult {
  name: string;
  /** Hosts newly admitted (already admitted ones are left out). */
  added: string[];
  /** The session's whole allowlist now. */
  hosts: string[];
  /** Whether the running proxy was reloaded (false: it is not running; the hosts apply at its next start). */
  reloaded: boolean;
  reloadMs: number | null;
}

/** Admits `wanted` in a session's allowlist: recorded in its state, and live in its running proxy. */
export async function allowHosts(cwd: string, name: string, wanted: string[], invocation: Invocation): Promise<AllowResult> {
  const hostsGiven = checkAllow(wanted);
  if (hostsGiven.length === 0) throw new UsageError('give at least one HOST', `${invocation('allow')} ${name} HOST...`);
  const { repo, state } = await resolveSession(cwd, name, invocation);
  if (state.status === 'finished') throw new ParaError(`session ${name} is finished`, { code: 'session-finished' });
  const egress = recordedEgress(state);
  if (!state.container || egress.mode !== 'allowlist') {
    throw new UsageError(
      `session ${name} has ${state.container ? `--egress ${egress.mode}` : 'no container'}: there is no allowlist to widen`,
      'allow applies to sessions with the default egress (allowlist)',
    );
  }
  const added = hostsGiven.filter((h) => !egress.hosts.includes(h));
  const hosts = [...egress.hosts, ...added];
  const engine = sessionEngine(state);
  const paths = sessionPaths(repo, name);
  let reloadMs: number | null = null;
  if (added.length) {
    const proxy = await engine.inspectContainer(paths.proxy);
    if (proxy?.State.Running) reloadMs = await widenProxy(engine, paths.proxy, hosts);
    await writeSession(repo, { ...state, egress: { ...egress, allow: [...new Set([...egress.allow, ...added])], hosts } });
  }
  return { name, added, hosts, reloaded: reloadMs !== null, reloadMs };
}

export interface HostTally {
  host: string;
  verdict: 'admitted' | 'refused';
  /** Why squid refused it (para's reason), or "allowed". */
  reason: string;
  count: number;
  first: string;
  last: string;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** squid's %tl ("06/Dec/2026:21:03:54 +0000") as ISO 8601, or null. */
function isoTime(text: string): string | null {
  const m = /^(\d{2})\/([A-Z][a-z]{2})\/(\d{4}):(\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$/.exec(text);
  if (!m || !MONTHS.includes(m[2])) return null;
  const month = String(MONTHS.indexOf(m[2]) + 1).padStart(2, '0');
  const date = new Date(`${m[3]}-${month}-${m[1]}T${m[4]}:${m[5]}:${m[6]}${m[7]}${m[8]}:${m[9]}`);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/**
 * The proxy's access log (para's logformat: time, method, target, status, squid's verdict,
 * para's reason), one tally per host and verdict, most recent first. Lines that do not parse are
 * counted, not shown.
 */
export function tallyProxyLog(text: string): { hosts: HostTally[]; unparsed: number } {
  const tallies = new Map<string, HostTally>();
  let unparsed = 0;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const m = /^(\S+ [+-]\d{4}) ([A-Z]{1,16}) (\S{1,2048}) (\d{3}) (\S{1,64}) (\S{1,128})$/.exec(line);
    const time = m ? isoTime(m[1]) : null;
    if (!m || !time) {
      unparsed += 1;
      continue;
    }
    const [, , method, target, , , reason] = m;
    let host = method === 'CONNECT' ? target.replace(/:\d{1,5}$/, '') : '';
    if (method !== 'CONNECT') {
      try {
        host = new URL(target).hostname;
      } catch {
        host = target;
      }
    }
    host = host.toLowerCase().slice(0, 253);
    // para's own probe that the proxy answers, not the agent's.
    if (host === 'para-probe.invalid') continue;
    const verdict = reason === 'allowed' ? 'admitted' : 'refused';
    const key = `${verdict} ${host}`;
    const found = tallies.get(key);
    if (found) {
      found.count += 1;
      found.last = time;
      if (verdict === 'refused') found.reason = reason;
    } else tallies.set(key, { host, verdict, reason, count: 1, first: time, last: time });
  }
  return { hosts: [...tallies.values()].sort((a, b) => b.last.localeCompare(a.last)), unparsed };
}

/** How many requests the proxy refused since `since` (an ISO time); para's own probes are not counted. */
export async function refusalsSince(engine: Engine, proxy: string, since: string): Promise<number> {
  return tallyProxyLog(await engine.logs(proxy, { since }))
    .hosts.filter((h) => h.verdict === 'refused')
    .reduce((sum, h) => sum + h.count, 0);
}

/** What a session's proxy refused and admitted so far. */
export async function egressReport(
  cwd: string,
  name: string,
  invocation: Invocation,
): Promise<{ name: string; mode: string; allowed: string[]; hosts: HostTally[]; unparsed: number }> {
  const { repo, state } = await resolveSession(cwd, name, invocation);
  const egress = recordedEgress(state);
  if (!state.container || egress.mode !== 'allowlist')
    return { name, mode: state.container ? egress.mode : 'no container', allowed: egress.hosts, hosts: [], unparsed: 0 };
  const engine = sessionEngine(state);
  const paths = sessionPaths(repo, name);
  const logs = await engine.docker(['logs', '--tail', '100000', paths.proxy], { allowFailure: true });
  if (logs.exitCode !== 0) {
    throw new ParaError(`the proxy of session ${name} has no log to read: ${logs.stderr.trim()}`, {
      code: 'no-proxy',
      hint: `resume the session: ${invocation('start')} ${name} --container`,
    });
  }
  // Looked at: list counts refusals from now on.
  await writeSession(repo, { ...state, egressSeenAt: new Date().toISOString() });
  return { name, mode: egress.mode, allowed: egress.hosts, ...tallyProxyLog(logs.stdout) };
}
