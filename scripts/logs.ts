// Show the output of a session's background job; -f follows it until the job ends.
import fs from 'fs-extra';
import { setTimeout as delay } from 'node:timers/promises';
import { assertSupportedPlatform, log, parseArgs, printJson, runMain } from './lib/cli.ts';
import { ParaError, UsageError } from './lib/errors.ts';
import { inspectContainer } from './lib/docker.ts';
import { refreshJob, resolveSession } from './lib/session-ops.ts';
import { readJobExitCode, sessionPaths, type SessionPaths } from './lib/session-store.ts';

const USAGE = `Usage: npx tsx scripts/logs.ts NAME [-f|--follow] [--json]

Prints the output of the session's background job (start.ts --detach with a prompt or -- CMD).
With --follow, keeps printing until the job ends and exits with the job's exit code.
--json prints { name, output, exitCode, running }.`;

const POLL_MS = 250;

async function readFrom(file: string, offset: number): Promise<{ text: Buffer; next: number }> {
  const handle = await fs.promises.open(file, 'r');
  try {
    const { size } = await handle.stat();
    if (size <= offset) return { text: Buffer.alloc(0), next: size < offset ? 0 : offset };
    const text = Buffer.alloc(size - offset);
    await handle.read(text, 0, text.length, offset);
    return { text, next: size };
  } finally {
    await handle.close();
  }
}

async function follow(paths: SessionPaths, container: string | null): Promise<number> {
  let offset = 0;
  for (;;) {
    const done = await readJobExitCode(paths);
    const chunk = await readFrom(paths.logFile, offset);
    process.stdout.write(chunk.text);
    offset = chunk.next;
    if (done !== undefined) return done;
    // The job cannot finish if its container is gone or stopped.
    const info = container ? await inspectContainer(container) : undefined;
    if (!info?.State.Running) {
      throw new ParaError(`the container of this session is ${info ? 'stopped' : 'gone'}, so the job ended without an exit status`, { code: 'job-lost', hint: 'start the session again to resume it' });
    }
    await delay(POLL_MS);
  }
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['follow', 'json', 'verbose', 'help'], alias: { f: 'follow', h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', 'npx tsx scripts/logs.ts NAME [-f]');
  const { state } = await resolveSession(process.cwd(), String(args._[0]));
  const paths = sessionPaths(state.repo, state.name);
  if (!state.job || !(await fs.pathExists(paths.logFile))) {
    throw new ParaError(`session ${state.name} has no background output`, { code: 'no-output', hint: `start a background job: npx tsx scripts/start.ts ${state.name} --container --detach -p "..."` });
  }
  if (args.json) {
    const refreshed = await refreshJob(state);
    const exitCode = refreshed.job?.exitCode ?? null;
    printJson({ name: state.name, output: await fs.readFile(paths.logFile, 'utf8'), exitCode, running: exitCode === null });
    return 0;
  }
  if (!args.follow) {
    process.stdout.write(await fs.readFile(paths.logFile));
    const refreshed = await refreshJob(state);
    if (refreshed.job?.exitCode === null) log('(the job is still running; follow it with -f)');
    return 0;
  }
  const code = await follow(paths, state.container);
  await refreshJob(state);
  log(`job exited with code ${code}`);
  return code;
}

await runMain(main);
