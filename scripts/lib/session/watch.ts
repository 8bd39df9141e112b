// What `para watch` shows and when it tells you: one row per session (its state first), and a
// notification when a session starts waiting for you or its job ends.
import { execa } from 'execa';
import { forTerminal } from '../cli.ts';
import { git } from '../git.ts';
import type { Repo } from '../repo.ts';
import type { AgentState } from './agent-state.ts';
import { overview, type SessionView } from './list.ts';

export interface WatchRow {
  name: string;
  state: AgentState | 'finished';
  /** Seconds in this state, when known. */
  stateAge: number | null;
  ahead: number | null;
  behind: number | null;
  uncommitted: boolean | null;
  refused: number | null;
  job: string;
  /** Everything a hostile session could have put here, already escaped. */
  note: string;
}

/** A duration as list and watch show it: 42s, 5m, 3h, 2d. */
export function age(seconds: number | null): string {
  if (seconds === null) return '';
  if (seconds < 90) return `${seconds}s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)}m`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

/** Commits on the checkout's HEAD the branch lacks (behind) and the branch has on top (ahead). */
async function aheadBehind(checkout: string, branch: string): Promise<[number, number] | null> {
  const result = await git(['rev-list', '--left-right', '--count', `HEAD...refs/heads/${branch}`], { cwd: checkout, allowFailure: true });
  const [behind, ahead] = result.stdout.split(/\s+/).map(Number);
  return result.exitCode === 0 && Number.isInteger(ahead) && Number.isInteger(behind) ? [ahead, behind] : null;
}

function jobText(s: SessionView): string {
  if (!s.job) return '';
  if (s.job.state === 'running') return 'running';
  if (s.job.state === 'exited') return `exit ${s.job.exitCode}`;
  return 'lost';
}

export async function watchRows(repo: Repo, checkout: string, now = Date.now()): Promise<{ rows: WatchRow[]; warnings: string[] }> {
  const view = await overview(repo, now);
  const rows = await Promise.all(
    view.sessions.map(async (s): Promise<WatchRow> => {
      const counts = s.head ? await aheadBehind(checkout, s.branch) : null;
      const since = s.activity?.since ? Date.parse(s.activity.since) : Number.NaN;
      return {
        name: s.name,
        state: s.activity?.state ?? 'finished',
        stateAge: Number.isNaN(since) ? null : Math.max(0, Math.round((now - since) / 1000)),
        ahead: counts?.[0] ?? null,
        behind: counts?.[1] ?? null,
        uncommitted: s.uncommittedChanges,
        refused: s.egress?.refusedSinceLastLook ?? null,
        job: jobText(s),
        note: forTerminal(
          [
            s.orphan ? 'container missing' : '',
            s.containerState !== 'running' && s.status === 'active' ? s.containerState : '',
            s.plantedGit ? 'planted .git!' : '',
          ]
            .filter(Boolean)
            .join(', '),
        ),
      };
    }),
  );
  return { rows, warnings: view.sessions.flatMap((s) => s.warnings.map((w) => forTerminal(`${s.name}: ${w}`))) };
}

export const HEADER = ['STATE', 'NAME', 'AHEAD', 'BEHIND', 'CHANGES', 'REFUSED', 'JOB', 'NOTE'];

export function cells(row: WatchRow): string[] {
  return [
    `${row.state}${row.stateAge !== null ? ` ${age(row.stateAge)}` : ''}`,
    row.name,
    row.ahead === null ? '-' : String(row.ahead),
    row.behind === null ? '-' : String(row.behind),
    row.uncommitted === null ? '-' : row.uncommitted ? 'yes' : 'no',
    row.refused ? String(row.refused) : '-',
    row.job || '-',
    row.note,
  ];
}

/** Columns padded to their widest cell. */
export function table(rows: string[][]): string[] {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    r
      .map((cell, i) => cell.padEnd(widths[i]))
      .join('  ')
      .trimEnd(),
  );
}

export type Notice = { name: string; state: 'waiting' | 'done' | 'failed' };

/**
 * What is worth telling a person between two looks: a session that started waiting for them, or
 * whose job ended (done or failed). The first look tells nothing (it only learns where things are).
 */
export function notices(before: Map<string, WatchRow> | null, rows: WatchRow[]): Notice[] {
  if (!before) return [];
  const found: Notice[] = [];
  for (const row of rows) {
    const was = before.get(row.name);
    if (!was) continue;
    if (row.state === 'waiting' && was.state !== 'waiting') found.push({ name: row.name, state: 'waiting' });
    else if (row.job.startsWith('exit') && !was.job.startsWith('exit')) found.push({ name: row.name, state: row.job === 'exit 0' ? 'done' : 'failed' });
  }
  return found;
}

/** At most one notice per session per `gapMs`: a session flipping its state (its hooks are the agent's) cannot flood you. */
export function throttled(found: Notice[], lastAt: Map<string, number>, now = Date.now(), gapMs = 30_000): Notice[] {
  return found.filter((n) => {
    const last = lastAt.get(n.name);
    if (last !== undefined && now - last < gapMs) return false;
    lastAt.set(n.name, now);
    return true;
  });
}

async function onPath(command: string): Promise<boolean> {
  const found = await execa('sh', ['-c', 'command -v "$1"', 'para-which', command], { reject: false, stdin: 'ignore' });
  return found.exitCode === 0;
}

/** How notices leave watch: the user's own command, and the desktop's notifier where there is one. */
export async function notifiers(env: NodeJS.ProcessEnv = process.env, platform = process.platform): Promise<Array<(n: Notice) => Promise<void>>> {
  const found: Array<(n: Notice) => Promise<void>> = [];
  const own = env.PARA_NOTIFY_COMMAND;
  // The command gets the session and the state as its arguments, never through a shell.
  if (own) found.push(async (n) => void (await execa(own, [n.name, n.state], { reject: false, stdin: 'ignore', timeout: 30_000 })));
  if (env.PARA_NOTIFY_DESKTOP !== '0') {
    const text = (n: Notice) => (n.state === 'waiting' ? `${n.name} is waiting for you` : `${n.name}: its job ${n.state === 'done' ? 'is done' : 'failed'}`);
    if (platform === 'linux' && (env.DISPLAY || env.WAYLAND_DISPLAY) && (await onPath('notify-send'))) {
      found.push(async (n) => void (await execa('notify-send', ['--app-name=para', 'para', text(n)], { reject: false, stdin: 'ignore', timeout: 10_000 })));
    } else if (platform === 'darwin' && (await onPath('osascript'))) {
      // The text goes as an argument of the script, never inside its source.
      const script = 'on run argv\ndisplay notification (item 1 of argv) with title "para"\nend run';
      found.push(async (n) => void (await execa('osascript', ['-e', script, text(n)], { reject: false, stdin: 'ignore', timeout: 10_000 })));
    }
  }
  return found;
}

/** The terminal's own signals for a notice: the bell and OSC 9 (shown as a desktop notification by terminals that know it). */
export function terminalNotice(n: Notice): string {
  return `\x07\x1b]9;para: ${n.name} ${n.state === 'waiting' ? 'is waiting for you' : `job ${n.state}`}\x07`;
}
