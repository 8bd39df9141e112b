// Show a session's commits since it started (brought to para/NAME first).
import { assertSupportedPlatform, forTerminal, invocation, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { sessionCommits, sessionWork } from './lib/session/review.ts';

const USAGE = `Usage: ${invocation('log')} NAME [-n COUNT] [--json]

Lists the commits session NAME made since it started, newest first, after bringing them to
para/NAME. Uncommitted files are not commits: ${invocation('diff')} NAME shows them.

  -n, --max-count COUNT   at most COUNT commits (default 100)
  --json                  { ok, name, branch, base, head, commits: [{ oid, author, date, subject }], warnings }`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['max-count'], boolean: ['json', 'verbose', 'help'], alias: { h: 'help', n: 'max-count' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', `${invocation('log')} NAME`);
  const count = args['max-count'] === undefined ? 100 : Number(args['max-count']);
  if (!Number.isInteger(count) || count < 1 || count > 10_000) throw new UsageError('--max-count takes a whole number from 1 to 10000');
  const work = await sessionWork(process.cwd(), String(args._[0]), invocation, { files: false });
  const commits = await sessionCommits(work.repo, work.base, work.head, count);
  if (args.json) {
    printJson({ ok: true, name: work.state.name, branch: work.state.branch, base: work.base, head: work.head, commits, warnings: work.warnings });
    return 0;
  }
  for (const message of work.warnings) warn(message);
  if (commits.length === 0) process.stderr.write(`session ${work.state.name} has made no commit since it started\n`);
  for (const c of commits)
    process.stdout.write(`${c.oid.slice(0, 12)} ${c.date.slice(0, 16).replace('T', ' ')} ${forTerminal(c.author)}  ${forTerminal(c.subject)}\n`);
  return 0;
}

await runMain(main);
