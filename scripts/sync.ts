// Bring a session's commits from its container to para/NAME on the host.
import { assertSupportedPlatform, invocation, keptSummary, log, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { syncOne } from './lib/session/sync-one.ts';

const USAGE = `Usage: ${invocation('sync')} NAME [--files] [--json]

Brings the commits the agent made on its branch inside the session container to para/NAME in
this repository, as data: a git bundle read over docker exec, every object checked, and only
para/NAME moved. list, logs, finish, cancel and a resuming start do the same by themselves.

  --files   for a session on another engine (its files are in its volume, not in a folder here):
            also commit its uncommitted files inside its container, on top of its HEAD, and keep
            that commit on para/archived/<time>/NAME.wip (git diff para/NAME para/archived/<time>/NAME.wip)`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['json', 'verbose', 'help', 'files'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', `${invocation('sync')} NAME`);
  const result = await syncOne(process.cwd(), String(args._[0]), invocation, { files: Boolean(args.files) });
  if (args.json) {
    printJson({ ok: true, ...result });
    return 0;
  }
  if (result.plantedGit) warn(`the folder of session ${result.name} holds a .git that para did not make: do not run git inside it`);
  if (result.skipped) log(`session ${result.name}: nothing read, ${result.skipped}; ${result.branch} stays at ${result.head?.slice(0, 12) ?? '-'}`);
  else log(`session ${result.name}: ${result.branch} ${result.moved.length ? 'moved to' : 'is up to date at'} ${result.head?.slice(0, 12) ?? '-'}`);
  if (args.files) log(result.filesRef ? `its uncommitted files are on ${result.filesRef}` : 'it has no uncommitted files');
  if (result.uncaptured.length) warn(`not in that commit, still only in the session: ${keptSummary(result.uncaptured)}`);
  return 0;
}

await runMain(main);
