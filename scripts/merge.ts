// Merge a session's work into your branch: its commits first come back to para/NAME.
import { assertSupportedPlatform, confirm, forTerminal, invocation, log, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { finishSession } from './lib/session/finish.ts';
import { mergeSession } from './lib/session/merge.ts';

const USAGE = `Usage: ${invocation('merge')} NAME [--squash] [--into BRANCH] [--expect COMMIT] [--finish] [--allowlist-change] [--json]

Brings the agent's commits to para/NAME, then merges them with your own git into the branch of
the checkout you are in (--into BRANCH switches to that branch first); --squash makes them one
commit. Only committed work is merged: uncommitted files in the session are named, not taken.
A checkout with uncommitted changes is refused, and nothing is forced: on a conflict the merge
stops as git stops, with the files as git leaves them, and it says how to go on or abort. After a
merge it offers to finish the session (--finish does it without asking). A branch that adds files
under .para/ is refused; one that changes the repository's egress allowlist (.para/allowed-hosts,
against where the branch and yours meet, as git merges) needs --allowlist-change. --expect COMMIT
(printed by diff) merges only if the branch is still at what you reviewed.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    string: ['into', 'expect'],
    boolean: ['squash', 'finish', 'allowlist-change', 'json', 'verbose', 'help'],
    alias: { h: 'help' },
  });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', `${invocation('merge')} NAME [--squash] [--into BRANCH]`);
  if (args.into !== undefined && !String(args.into)) throw new UsageError('--into needs a branch name', `${invocation('merge')} NAME --into main`);
  const name = String(args._[0]);
  const result = await mergeSession(
    process.cwd(),
    name,
    {
      squash: Boolean(args.squash),
      into: args.into ? String(args.into) : undefined,
      allowlistChange: Boolean(args['allowlist-change']),
      expect: args.expect !== undefined ? String(args.expect) : undefined,
    },
    invocation,
  );
  let finished = false;
  const offer = result.outcome !== 'conflict';
  if (offer && (args.finish || (!args.json && process.stdin.isTTY && process.stderr.isTTY && (await confirm(`Finish session ${name} now? [y/N] `))))) {
    await finishSession(process.cwd(), name, undefined, invocation);
    finished = true;
  }
  if (args.json) {
    const conflict =
      result.outcome === 'conflict'
        ? {
            error: {
              code: 'merge-conflict',
              message: `merging ${result.branch} into ${result.into} stopped on conflicts in: ${result.conflicts.map((f) => JSON.stringify(f)).join(', ')}`,
              hint: result.next.join('; '),
            },
          }
        : {};
    printJson({ ok: result.outcome !== 'conflict', ...result, finished, ...conflict });
    return result.outcome === 'conflict' ? 1 : 0;
  }
  for (const message of result.warnings) warn(message);
  if (result.outcome === 'up-to-date') log(`${result.into} already has everything on ${result.branch}: nothing to merge`);
  else if (result.outcome === 'merged')
    log(
      `merged ${result.branch} into ${result.into}${result.squash ? ' as one commit' : ''} (${result.commits} commit${result.commits === 1 ? '' : 's'}), now at ${result.head?.slice(0, 12)}`,
    );
  else {
    process.stderr.write(`error: merging ${result.branch} into ${result.into} stopped on conflicts in:\n`);
    for (const file of result.conflicts) process.stderr.write(`  ${forTerminal(file)}\n`);
    for (const step of result.next) process.stderr.write(`  next step: ${step}\n`);
    return 1;
  }
  if (finished) log(`finished session ${name}; branch ${result.branch} is kept`);
  else log(`finish the session when you are done with it: ${result.next[0]}`);
  return 0;
}

await runMain(main);
