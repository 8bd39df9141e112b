// Finish a session: commit pending work to para/NAME, remove container and worktree, keep the branch.
import { assertSupportedPlatform, log, parseArgs, printJson, runMain } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { finishSession } from './lib/session-ops.ts';

const USAGE = `Usage: npx tsx scripts/finish.ts NAME [-m MESSAGE] [--json]

Commits all pending changes in the session's worktree to para/NAME (a message is required
only when there is something to commit), stops and removes the container, removes the
worktree, keeps the branch, marks the session finished and prints how to merge it.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['message'], boolean: ['json', 'verbose', 'help'], alias: { m: 'message', h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', 'npx tsx scripts/finish.ts NAME -m "message"');
  const result = await finishSession(process.cwd(), String(args._[0]), args.message || undefined);
  if (args.json) printJson({ ok: true, ...result });
  else {
    log(`finished session ${result.name}${result.committed ? ' (pending changes committed)' : ''}; branch ${result.branch} is kept`);
    log(`merge it: ${result.mergeHint}`);
  }
  return 0;
}

await runMain(main);
