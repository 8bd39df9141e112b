// List this repository's sessions with their live container state.
import { assertSupportedPlatform, parseArgs, printJson, runMain } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { findRepo } from './lib/git.ts';
import { overview, type SessionView } from './lib/session-ops.ts';

const USAGE = `Usage: npx tsx scripts/list.ts [--json]

Every session of the repository containing the current folder: status, container state
(running, exited, missing), branch, uncommitted changes, age. Containers labelled for this
repository that belong to no session, and sessions whose container is gone, are marked as orphans
(scripts/clean.ts removes orphan containers).`;

function age(seconds: number): string {
  if (seconds < 90) return `${seconds}s`;
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)}m`;
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function row(s: SessionView): string[] {
  const changes = s.uncommittedChanges === null ? '-' : s.uncommittedChanges ? 'yes' : 'no';
  const job = s.job ? (s.job.exitCode === null ? 'job running' : `job exit ${s.job.exitCode}`) : '';
  const note = [s.orphan ? 'orphan: container missing' : '', job].filter(Boolean).join(', ');
  return [s.name, s.status, s.containerState, s.branch, changes, age(s.ageSeconds), note];
}

function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['json', 'verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length > 0) throw new UsageError(`unexpected argument ${String(args._[0])}`, 'see --help');
  const result = await overview(await findRepo(process.cwd()));
  if (args.json) {
    printJson(result);
    return 0;
  }
  if (result.sessions.length === 0 && result.orphanContainers.length === 0) {
    process.stdout.write('no sessions in this repository\n');
    return 0;
  }
  const rows = [['NAME', 'STATUS', 'CONTAINER', 'BRANCH', 'CHANGES', 'AGE', 'NOTE'], ...result.sessions.map(row)];
  process.stdout.write(`${table(rows)}\n`);
  for (const orphan of result.orphanContainers) {
    process.stdout.write(`orphan container ${orphan.name} (${orphan.state}${orphan.session ? `, session label ${orphan.session}` : ''}): run scripts/clean.ts\n`);
  }
  return 0;
}

await runMain(main);
