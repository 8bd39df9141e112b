// Show what a session changed: its work against the commit it started from, uncommitted files included.
import { assertSupportedPlatform, forTerminal, invocation, log, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { createReadStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { changedFiles, patchText, sessionWork, withPatch } from './lib/session/review.ts';

/** JSON carries at most this much patch (patchTruncated says it was cut); a terminal gets all of it. */
const JSON_PATCH_BYTES = 8 * 1024 * 1024;

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
  if (args.json) {
    const { patch, truncated } = await patchText(work.repo, work.base, work.tip, Boolean(args.stat), JSON_PATCH_BYTES);
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
      patchTruncated: truncated,
      warnings: work.warnings,
    });
    return 0;
  }
  for (const message of work.warnings) warn(message);
  // What was reviewed, by id: merge --expect takes it, so later commits are not merged unseen.
  if (work.head)
    log(
      `${work.state.branch} is at ${work.head.slice(0, 12)} (merge exactly this: ${invocation('merge')} ${work.state.name} --expect ${work.head.slice(0, 12)})`,
    );
  if (work.uncommitted === 'unreachable') warn('its uncommitted files are not shown: its container is not running');
  if (work.uncaptured.length)
    warn(
      `not shown (ignored files, nested repositories): ${work.uncaptured
        .slice(0, 5)
        .map((f) => JSON.stringify(f))
        .join(', ')}`,
    );
  // Streamed: a patch of any size; on a terminal its control characters are shown escaped.
  const written = await withPatch(work.repo, work.base, work.tip, Boolean(args.stat), async (file) => {
    const decoder = new StringDecoder('utf8');
    let bytes = 0;
    for await (const chunk of createReadStream(file)) {
      bytes += (chunk as Buffer).length;
      const text = decoder.write(chunk as Buffer);
      if (!process.stdout.write(process.stdout.isTTY ? forTerminal(text) : text)) await new Promise((resolve) => process.stdout.once('drain', resolve));
    }
    return bytes;
  });
  if (!written) process.stderr.write(`session ${work.state.name} has changed nothing since it started\n`);
  return 0;
}

await runMain(main);
