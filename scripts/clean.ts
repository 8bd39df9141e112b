// Remove this repository's orphans: labelled containers with no session, stale worktree records.
import { assertSupportedPlatform, log, parseArgs, printJson, runMain } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { findRepo } from './lib/git.ts';
import { applyClean, planClean } from './lib/session-ops.ts';

const USAGE = `Usage: npx tsx scripts/clean.ts [--dry-run] [--json]

Removes, for the repository containing the current folder only: containers labelled for it
that belong to no session, worktree records under .para/worktrees whose folder is gone, and
sessions left half-started by an interrupted start (when nothing was written in them).
Another repository's sessions and unlabelled containers are never touched.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['dry-run', 'json', 'verbose', 'help'], alias: { n: 'dry-run', h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length > 0) throw new UsageError(`unexpected argument ${String(args._[0])}`, 'see --help');
  const repo = await findRepo(process.cwd());
  const plan = await planClean(repo);
  const dryRun = Boolean(args['dry-run']);
  if (!dryRun) await applyClean(repo, plan);
  if (args.json) {
    printJson({ ok: true, dryRun, containers: plan.containers, worktrees: plan.worktrees, staleStarts: plan.staleStarts });
    return 0;
  }
  const verb = dryRun ? 'would remove' : 'removed';
  for (const c of plan.containers) log(`${verb} container ${c.name}${c.session ? ` (session label ${c.session})` : ''}`);
  for (const w of plan.worktrees) log(`${verb} stale worktree record ${w}`);
  for (const s of plan.staleStarts) log(`${verb} half-started session ${s}`);
  if (plan.containers.length + plan.worktrees.length + plan.staleStarts.length === 0) log('nothing to clean');
  return 0;
}

await runMain(main);
