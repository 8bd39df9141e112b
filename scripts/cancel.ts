// Cancel a session without losing anything: uncommitted work is committed and the branch archived.
import { assertSupportedPlatform, confirm, invocation, keptSummary, log, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { ParaError, UsageError } from './lib/errors.ts';
import { cancelSession } from './lib/session/cancel.ts';
import { resolveSession } from './lib/session/resolve.ts';

const USAGE = `Usage: ${invocation('cancel')} NAME [--force] [--json]

Nothing is lost: the agent's commits, its other branches, a detached HEAD and the folder's
uncommitted files are all kept, the session branch as para/archived/<time>/NAME and the rest
beside it (NAME.branches/..., NAME.head, NAME.wip). Then the container, its volume, the folder
(moved to .para/kept/ when it holds files that could not be committed) and the state go.
On a terminal it asks first; --force skips the question.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['force', 'json', 'verbose', 'help'], alias: { f: 'force', h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', `${invocation('cancel')} NAME [--force]`);
  const name = String(args._[0]);
  await resolveSession(process.cwd(), name, invocation);
  if (!args.force && !args.json && process.stdin.isTTY && process.stderr.isTTY) {
    if (!(await confirm(`Cancel session ${name}? Its work is kept on an archive branch. [y/N] `))) {
      throw new ParaError('cancelled nothing', { code: 'aborted', hint: `run again with --force to skip the question` });
    }
  }
  const result = await cancelSession(process.cwd(), name, invocation);
  if (args.json) printJson({ ok: true, ...result });
  else {
    for (const message of result.warnings) warn(message);
    for (const ref of result.savedRefs.slice(0, 10)) log(`kept: branch ${ref}`);
    if (result.savedRefs.length > 10)
      log(`kept: ${result.savedRefs.length - 10} more branches (git branch --list '${result.savedRefs[0].replace(/\.(branches|tags|notes)\/.*$/, '')}*')`);
    if (result.keptFolder) log(`kept in ${result.keptFolder}: ${keptSummary(result.uncaptured)}`);
    log(`cancelled session ${name}${result.committedUncommittedWork ? '; its uncommitted work was committed' : ''}`);
    if (result.archivedBranch) log(`its work is kept on branch ${result.archivedBranch}`);
  }
  return 0;
}

await runMain(main);
