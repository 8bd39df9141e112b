// Remove this repository's orphans: labelled containers with no session, stale worktree records.
import { assertSupportedPlatform, invocation, log, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { findRepo } from './lib/git.ts';
import { applyClean, planClean } from './lib/session/clean.ts';

const USAGE = `Usage: ${invocation('clean')} [--dry-run] [--json]

Removes, for the repository containing the current folder only: containers and volumes
labelled for it that belong to no session, and sessions left half-started by an interrupted
start when nothing was written in them (one with files in it is kept: cancel it to keep its
work). Another repository's sessions and unlabelled containers are never touched.

On each engine it looks at, it also removes the credential brokers that no session of any
repository uses (no session container's forwarder, running or stopped, mounts the broker's
socket), with their socket volumes; the next start makes one again. And this repository's
images a newer build replaced while a session still used them (an old session image holds a
copy of the login), once nothing uses them.`;

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
  if (!dryRun) await applyClean(repo, plan, warn);
  if (args.json) {
    printJson({
      ok: true,
      dryRun,
      containers: plan.containers,
      volumes: plan.volumes,
      staleStarts: plan.staleStarts,
      keptStarts: plan.keptStarts,
      finished: plan.finished,
      brokers: plan.brokers.map((b) => ({ name: b.name, engine: b.engine })),
      images: plan.images.map((i) => ({ id: i.id, engine: i.engine, heldLogin: i.heldLogin })),
      problems: plan.problems,
    });
    return 0;
  }
  const verb = dryRun ? 'would remove' : 'removed';
  for (const c of plan.containers) log(`${verb} container ${c.name}${c.session ? ` (session label ${c.session})` : ''}`);
  for (const v of plan.volumes) log(`${verb} volume ${v}`);
  for (const s of plan.staleStarts) log(`${verb} half-started session ${s}`);
  for (const s of plan.finished) log(`${verb} the record of finished session ${s} (its branch is gone)`);
  for (const s of plan.keptStarts) log(`kept half-started session ${s}: files were written in it (keep them with: ${invocation('cancel')} ${s} --force)`);
  for (const i of plan.images)
    log(`${verb} the replaced image ${i.id.replace(/^sha256:/, '').slice(0, 12)} of this repository${i.heldLogin ? ' (it held a copy of your login)' : ''}`);
  for (const b of plan.brokers) log(`${verb} the credential broker ${b.name} and its volume ${b.volume} (no session uses it)`);
  for (const problem of plan.problems) warn(`${problem.message} (left alone)`);
  if (plan.containers.length + plan.volumes.length + plan.staleStarts.length + plan.finished.length + plan.brokers.length + plan.images.length === 0)
    log('nothing to clean');
  return 0;
}

await runMain(main);
