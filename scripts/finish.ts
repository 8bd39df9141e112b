// Finish a session: commit pending work to para/NAME, remove container and worktree, keep the branch.
import { assertSupportedPlatform, invocation, keptSummary, log, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { finishSession } from './lib/session/finish.ts';

const USAGE = `Usage: ${invocation('finish')} NAME [-m MESSAGE] [--json]

Brings the agent's commits to para/NAME, commits the folder's uncommitted files on top (a
message is required only when there is something to commit), keeps the agent's other branches
and a detached HEAD under para/archived/<time>/NAME.*, removes the container, its volume and
the folder (moved to .para/kept/ when it holds files that could not be committed, such as
ignored ones), keeps the branch, marks the session finished and prints how to merge it.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['message'], boolean: ['json', 'verbose', 'help'], alias: { m: 'message', h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', `${invocation('finish')} NAME -m "message"`);
  const result = await finishSession(process.cwd(), String(args._[0]), args.message || undefined, invocation);
  if (args.json) printJson({ ok: true, ...result });
  else {
    for (const message of result.warnings) warn(message);
    log(`finished session ${result.name}${result.committed ? ' (pending changes committed)' : ''}; branch ${result.branch} is kept`);
    for (const ref of result.savedRefs.slice(0, 10)) log(`also kept: branch ${ref}`);
    if (result.savedRefs.length > 10)
      log(`also kept: ${result.savedRefs.length - 10} more branches (git branch --list '${result.savedRefs[0].replace(/\.(branches|tags|notes)\/.*$/, '')}*')`);
    if (result.keptFolder) log(`kept in ${result.keptFolder}: ${keptSummary(result.uncaptured)}`);
    log(
      { merged: `already merged; delete the branch: ${result.mergeHint}`, empty: `to merge: ${result.mergeHint}`, 'to-merge': `merge it: ${result.mergeHint}` }[
        result.mergeState
      ],
    );
  }
  return 0;
}

await runMain(main);
