// One live view of every session: what each agent is doing, what it changed, and keys to act on it.
import { execa } from 'execa';
import { assertSupportedPlatform, invocation, selfCommand, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { findRepo, git } from './lib/git.ts';
import type { Repo } from './lib/repo.ts';
import { cells, HEADER, notices, notifiers, table, terminalNotice, throttled, watchRows, type Notice, type WatchRow } from './lib/session/watch.ts';

const USAGE = `Usage: ${invocation('watch')} [--interval SECONDS] [--once] [--json]

Every session of the repository, refreshed in place: its state first (working, waiting for you,
idle, done, failed; from Claude Code's hooks in the session, or its job's exit) and for how long,
its branch ahead of and behind your checkout's HEAD, uncommitted files, requests its proxy refused
since you last looked (para egress NAME), and its job. Keys: up/down (or k/j) select, a attaches
claude, l shows the job's output, d the diff, f finishes the session, q quits.

When a session starts waiting for you, or its job ends, watch rings the terminal's bell (and OSC 9),
runs notify-send (Linux) or osascript (macOS) where there is one (PARA_NOTIFY_DESKTOP=0: not), and
PARA_NOTIFY_COMMAND if set, with the session's name and the state (waiting, done, failed) as its two
arguments (no shell). Without a terminal it prints a line for each change; --once prints one look.`;

interface Frame {
  rows: WatchRow[];
  warnings: string[];
}

function plainLines(frame: Frame): string[] {
  return table([HEADER, ...frame.rows.map(cells)]);
}

const CSI = '\x1b[';

/** Runs one of para's own verbs with the terminal, as the same program watch runs in. */
async function runVerb(verb: string, args: string[]): Promise<void> {
  const [command, ...rest] = selfCommand(verb);
  await execa(command, [...rest, ...args], { stdio: 'inherit', reject: false });
}

async function interactive(repo: Repo, checkout: string, intervalMs: number): Promise<number> {
  const out = process.stdout;
  const stdin = process.stdin;
  const send = await notifiers();
  let selected = 0;
  let frame: Frame = { rows: [], warnings: [] };
  let previous: Map<string, WatchRow> | null = null;
  const noticed = new Map<string, number>();
  let busy = false;
  let quit: (() => void) | null = null;
  let timer: NodeJS.Timeout | null = null;
  let status = '';
  let stopped = false;
  const enter = () => {
    out.write(`${CSI}?1049h${CSI}?25l`);
    stdin.setRawMode(true);
    stdin.resume();
  };
  const leave = () => {
    stdin.setRawMode(false);
    out.write(`${CSI}?25h${CSI}?1049l`);
  };
  const draw = () => {
    const width = out.columns || 120;
    const height = out.rows || 40;
    const lines = table([HEADER, ...frame.rows.map(cells)]);
    const shown: string[] = [`para watch: ${frame.rows.length} session${frame.rows.length === 1 ? '' : 's'} in ${repo.root}`.slice(0, width), ''];
    lines.forEach((line, i) => {
      const text = line.slice(0, width);
      shown.push(i > 0 && i - 1 === selected ? `${CSI}7m${text}${CSI}0m` : text);
    });
    shown.push('', ...frame.warnings.slice(0, 5).map((w) => w.slice(0, width)));
    shown.push(status.slice(0, width), 'a attach  l logs  d diff  f finish  up/down select  q quit'.slice(0, width));
    // Drawn over the last frame line by line (each cleared to its end), then the rest cleared: no flicker.
    out.write(
      `${CSI}H${shown
        .slice(0, height)
        .map((line) => `${line}${CSI}K`)
        .join('\r\n')}${CSI}J`,
    );
  };
  const refresh = async () => {
    if (busy) return;
    try {
      frame = await watchRows(repo, checkout);
      status = '';
    } catch (error) {
      status = `could not look: ${error instanceof Error ? error.message : String(error)}`;
    }
    const found = throttled(notices(previous, frame.rows), noticed);
    previous = new Map(frame.rows.map((r) => [r.name, r]));
    selected = Math.min(selected, Math.max(0, frame.rows.length - 1));
    if (!busy && !stopped) {
      draw();
      for (const n of found) out.write(terminalNotice(n));
    }
    await Promise.all(found.flatMap((n) => send.map((notify) => notify(n))));
  };
  const schedule = () => {
    // A look still in flight when q was pressed must not arm the next one (watch would never end).
    if (stopped) return;
    timer = setTimeout(async () => {
      await refresh();
      schedule();
    }, intervalMs);
  };
  const act = async (verb: string, args: string[]) => {
    busy = true;
    leave();
    stdin.pause();
    out.write(`${CSI}H${CSI}2J`);
    await runVerb(verb, args);
    process.stderr.write('\n(press any key to go back to para watch)');
    await new Promise((resolve) => {
      stdin.setRawMode(true);
      stdin.resume();
      stdin.once('data', resolve);
    });
    busy = false;
    enter();
    await refresh();
  };
  const onKey = async (key: Buffer) => {
    if (busy) return;
    const text = key.toString('utf8');
    const row = frame.rows[selected];
    if (text === 'q' || text === '\x03' || text === '\x1b') return quit?.();
    if (text === `${CSI}A` || text === 'k') selected = Math.max(0, selected - 1);
    else if (text === `${CSI}B` || text === 'j') selected = Math.min(frame.rows.length - 1, selected + 1);
    else if (row && text === 'a') return act('start', [row.name, '--container']);
    else if (row && text === 'l') return act('logs', [row.name]);
    else if (row && text === 'd') return act('diff', [row.name]);
    else if (row && text === 'f') return act('finish', [row.name]);
    draw();
  };
  enter();
  stdin.on('data', onKey);
  out.on('resize', draw);
  try {
    await refresh();
    schedule();
    await new Promise<void>((resolve) => {
      quit = resolve;
    });
  } finally {
    stopped = true;
    if (timer) clearTimeout(timer);
    stdin.off('data', onKey);
    leave();
    stdin.pause();
  }
  return 0;
}

async function plain(repo: Repo, checkout: string, intervalMs: number, once: boolean, json: boolean): Promise<number> {
  const send = await notifiers();
  let previous: Map<string, WatchRow> | null = null;
  const noticed = new Map<string, number>();
  for (;;) {
    const frame = await watchRows(repo, checkout);
    if (once) {
      if (json) printJson({ ok: true, sessions: frame.rows, warnings: frame.warnings });
      else {
        for (const w of frame.warnings) warn(w);
        process.stdout.write(frame.rows.length ? `${plainLines(frame).join('\n')}\n` : 'no sessions in this repository\n');
      }
      return 0;
    }
    // A line per session whose row changed since the last look (the first look prints them all).
    const stamp = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    for (const row of frame.rows) {
      const was = previous?.get(row.name);
      const text = cells(row);
      if (!was || cells(was).join('\t') !== text.join('\t')) {
        process.stdout.write(json ? `${JSON.stringify({ at: stamp, ...row })}\n` : `${stamp} ${text.filter(Boolean).join('  ')}\n`);
      }
    }
    const found: Notice[] = throttled(notices(previous, frame.rows), noticed);
    previous = new Map(frame.rows.map((r) => [r.name, r]));
    await Promise.all(found.flatMap((n) => send.map((notify) => notify(n))));
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['interval'], boolean: ['once', 'json', 'verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length > 0) throw new UsageError(`unexpected argument ${String(args._[0])}`, 'see --help');
  const seconds = args.interval === undefined ? 2 : Number(args.interval);
  if (!Number.isFinite(seconds) || seconds < 0.5 || seconds > 3600)
    throw new UsageError(`--interval must be a number of seconds from 0.5 to 3600, got ${args.interval}`, `${invocation('watch')} --interval 2`);
  const repo = await findRepo(process.cwd());
  const checkout = (await git(['rev-parse', '--show-toplevel'], { cwd: process.cwd() })).stdout;
  const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  if (tty && !args.once && !args.json) return interactive(repo, checkout, seconds * 1000);
  return plain(repo, checkout, seconds * 1000, Boolean(args.once), Boolean(args.json));
}

await runMain(main);
