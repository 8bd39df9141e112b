// Show what a session changed: its work against the commit it started from, uncommitted files included.
import { assertSupportedPlatform, forTerminal, invocation, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { changedFiles, patchOf, sessionWork } from './lib/session/review.ts';

const USAGE = `Usage: ${invocation('diff')} NAME [--stat] [--committed] [--json]

Shows what session NAME changed since it started: its commits (brought to para/NAME first) and
its uncommitted files, committed as data for the comparison (nothing of the agent's is run or
checked out, and no ref is left behind). The agent wrote all of it: on a terminal its control
characters are shown escaped.

  --stat        the changed files and their line counts only
  --committed   leave the uncommitted files out: para/NAME against the start
  --json        { ok, name, branch, base, head, tip, uncommitted, files: [{ path, added, deleted }], patch, warnings }`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['stat', 'committed', 'json', 'verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', `${invocation('diff')} NAME [--stat]`);
  const work = await sessionWork(process.cwd(), String(args._[0]), invocation, { files: !args.committed });
  const patch = await patchOf(work.repo, work.base, work.tip, Boolean(args.stat));
  if (args.json) {
    printJson({
      ok: true,
      name: work.state.name,
      branch: work.state.branch,
      base: work.base,
      head: work.head,
      tip: work.tip,
      uncommitted: work.uncommitted,
      files: await changedFiles(work.repo, work.base, work.tip),
      uncaptured: work.uncaptured,
      patch,
      warnings: work.warnings,
    });
    return 0;
  }
  for (const message of work.warnings) warn(message);
  if (work.uncommitted === 'unreachable') warn('its uncommitted files are not shown: its container is not running');
  if (work.uncaptured.length)
    warn(
      `not shown (ignored files, nested repositories): ${work.uncaptured
        .slice(0, 5)
        .map((f) => JSON.stringify(f))
        .join(', ')}`,
    );
  if (patch) process.stdout.write(`${process.stdout.isTTY ? forTerminal(patch) : patch}\n`);
  else process.stderr.write(`session ${work.state.name} has changed nothing since it started\n`);
  return 0;
}

await runMain(main);
