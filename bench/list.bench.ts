// make bench: `para list --json` with one session against twelve, in one run on one image; what one
// refresh of `para watch` costs; and what an idle session uses (memory, and CPU for its status line).
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { parseArgs, runMain } from '../scripts/lib/cli.ts';
import { benchImage } from './images.ts';
import { line, mebibytes, median, timed } from './measure.ts';
import { labels } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { UsageError } from '../scripts/lib/errors.ts';
import { PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { testEgressImage } from '../test/support/images.ts';
import { makeRepo } from '../test/support/repos.ts';
import { cleanupAll, RUN_ID, TEST_LABEL } from '../test/support/resources.ts';

const USAGE = `Usage: node --import tsx bench/list.bench.ts [--rounds N] [--image IMAGE] [--sessions N]

Times node dist/para.mjs list --json in a temporary repository with one session (default egress,
detached, idle), then with --sessions (default 12) started in parallel; one refresh of para watch
(--once) with them; and the memory and CPU the idle sessions use (docker stats; CPU from the
machine's own counters over 20 s). Everything it creates is removed at the end.`;

const GOAL = 1.5;
const PARA = path.join(PROJECT_ROOT, 'dist', 'para.mjs');

/** Busy CPU time of the whole machine (all cores, seconds) over a period, from /proc/stat. */
async function machineBusy(seconds: number): Promise<number> {
  const read = async () => {
    const fields = (await fs.readFile('/proc/stat', 'utf8')).split('\n')[0].split(/\s+/).slice(1).map(Number);
    return { busy: fields[0] + fields[1] + fields[2] + fields[5] + fields[6], all: fields.slice(0, 8).reduce((a, b) => a + b, 0) };
  };
  const before = await read();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const after = await read();
  return (after.busy - before.busy) / 100;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['rounds', 'image', 'sessions'], boolean: ['help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const rounds = Number(args.rounds || 5);
  const count = Number(args.sessions || 12);
  if (!Number.isInteger(rounds) || rounds < 1) throw new UsageError(`--rounds must be a positive integer, got ${args.rounds}`);
  if (!Number.isInteger(count) || count < 2) throw new UsageError(`--sessions must be an integer of at least 2, got ${args.sessions}`);
  if (!(await fs.pathExists(PARA))) throw new UsageError(`${PARA} is missing`, 'run: make build (make bench does it)');
  try {
    const image = await benchImage(args.image || undefined, `para-bench-list-${RUN_ID}:auth`);
    await testEgressImage();
    const repo = await makeRepo();
    const env = { ...(process.env as Record<string, string>), ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` };
    const para = (verb: string[]) => execa(process.execPath, [PARA, ...verb], { cwd: repo.root, env, stdin: 'ignore' });
    const start = (name: string) => para(['start', name, '--container', '--detach', '--image', image]);
    const list = async () => {
      const result = await para(['list', '--json']);
      return JSON.parse(result.stdout) as { sessions: unknown[] };
    };
    const timeList = async (expected: number) => {
      await list(); // the first look after a start brings the branch up to date; the next ones are what a glance costs
      const times: number[] = [];
      for (let round = 0; round < rounds; round += 1) {
        times.push(
          await timed(async () => {
            const listed = await list();
            if (listed.sessions.length !== expected) throw new Error(`list showed ${listed.sessions.length} sessions, not ${expected}`);
          }),
        );
      }
      return times;
    };
    // What the machine does with no session of this run, to tell the sessions' share from the rest.
    const baseline = await machineBusy(20);
    process.stderr.write(`timing list in ${repo.root} on ${image}\n`);
    await start('s00');
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const one = await timeList(1);
    const started = await timed(() => Promise.all(Array.from({ length: count - 1 }, (_, i) => start(`s${String(i + 1).padStart(2, '0')}`))));
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const many = await timeList(count);
    const watch: number[] = [];
    for (let round = 0; round < rounds; round += 1) watch.push(await timed(() => para(['watch', '--once'])));
    const ids = (await docker(['ps', '-q', '--filter', `label=${labels.repo}=${repo.root}`])).stdout.split('\n').filter(Boolean);
    const stats = (await docker(['stats', '--no-stream', '--format', '{{.Name}} {{.MemUsage}}', ...ids])).stdout.split('\n').filter(Boolean);
    const total = stats.reduce((sum, row) => sum + mebibytes(row.split(' ').slice(1).join(' ')), 0);
    const busy = await machineBusy(20);
    const ratio = median(many) / median(one);
    process.stdout.write(
      [
        `para list --json with 1 and with ${count} sessions (${rounds} rounds, default egress, idle, image ${image}):`,
        line('list --json, 1 session', one),
        line(`list --json, ${count} sessions`, many),
        line(`watch --once (one refresh), ${count} sessions`, watch),
        `  ratio list ${count} / list 1: ${ratio.toFixed(2)} (goal <= ${GOAL}: ${ratio <= GOAL ? 'met' : 'not met'})`,
        `  ${count - 1} sessions started in parallel: ${(started / 1000).toFixed(2)} s`,
        `  memory of an idle session (its container, proxy and forwarder; docker stats): ${(total / count).toFixed(1)} MiB`,
        `  CPU of the whole machine while ${count} sessions idle: ${((busy / 20) * 100).toFixed(1)} % of one core, against ${((baseline / 20) * 100).toFixed(1)} % before they started (20 s each)`,
        '',
      ].join('\n'),
    );
    return 0;
  } finally {
    await cleanupAll();
  }
}

await runMain(main);
