// Show the output of a session's background job; -f follows it until the job ends.
import { StringDecoder } from 'node:string_decoder';
import { assertSupportedPlatform, forTerminal, invocation, log, parseArgs, printJson, runMain } from './lib/cli.ts';
import { ParaError, UsageError } from './lib/errors.ts';
import { followJob, jobOutput, jobProgress, settleJob, type JobProgress } from './lib/session/job.ts';
import type { Engine } from './lib/engine/engine.ts';
import { resolveSession } from './lib/session/resolve.ts';
import { sessionEngine, writeSession, type JobState, type SessionState } from './lib/session/store.ts';
import { syncSession } from './lib/session/sync.ts';
import type { Repo } from './lib/repo.ts';

const USAGE = `Usage: ${invocation('logs')} NAME [-f|--follow] [--json]

Prints the output of the session's background job (start --detach with a prompt or -- CMD).
With --follow, keeps printing until the job ends and exits with the job's exit code.
The agent's commits are brought to para/NAME first (and again at the end with --follow).
--json prints { ok, name, output, exitCode, running, state }.`;

/** Where the job stands; a newly known exit status is stored in the session. */
async function settle(engine: Engine, repo: Repo, state: SessionState, container: string, job: JobState): Promise<JobProgress> {
  const settled = await settleJob(engine, container, job);
  if (settled.job !== job) await writeSession(repo, { ...state, job: settled.job });
  return settled.progress;
}

/** The agent writes this output: on a terminal its escape sequences are shown, not obeyed. */
function writer(): (chunk: Buffer) => void {
  const decoder = new StringDecoder('utf8');
  return (chunk) => process.stdout.write(process.stdout.isTTY ? forTerminal(decoder.write(chunk)) : chunk);
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['follow', 'json', 'verbose', 'help'], alias: { f: 'follow', h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', `${invocation('logs')} NAME [-f]`);
  const { repo, state } = await resolveSession(process.cwd(), String(args._[0]), invocation);
  return show(sessionEngine(state), repo, state, Boolean(args.follow), Boolean(args.json));
}

/** The job's output, from the session's own engine. */
async function show(engine: Engine, repo: Repo, state: SessionState, follow: boolean, json: boolean): Promise<number> {
  if (state.status === 'finished' && state.container) {
    throw new ParaError(`session ${state.name} is finished: its container, and the job's output with it, are gone`, {
      code: 'no-output',
      hint: `its work is on ${state.branch}: git log ${state.branch}`,
    });
  }
  if (!state.job || !state.container) {
    throw new ParaError(`session ${state.name} has no background output`, {
      code: 'no-output',
      hint: `start a background job: ${invocation('start')} ${state.name} --container --detach -p "..."`,
    });
  }
  const container = state.container;
  const sync = () => syncSession(repo, state).catch(() => undefined);
  await sync();
  if (!follow) {
    const progress = await settle(engine, repo, state, container, state.job);
    if (json) {
      const chunks: Buffer[] = [];
      await jobOutput(engine, container, (chunk) => chunks.push(chunk));
      const output = Buffer.concat(chunks).toString('utf8');
      printJson({
        ok: true,
        name: state.name,
        output,
        exitCode: progress.state === 'exited' ? progress.exitCode : null,
        running: progress.state === 'running',
        state: progress.state,
      });
      return 0;
    }
    await jobOutput(engine, container, writer());
    if (progress.state === 'running') log('(the job is still running; follow it with -f)');
    if (progress.state === 'lost') log(`(the job ended without an exit status: ${progress.reason})`);
    return 0;
  }
  const before = await jobProgress(engine, container, state.job);
  if (before.state !== 'lost') await followJob(engine, container, writer());
  const progress = before.state === 'lost' ? before : await settle(engine, repo, state, container, state.job);
  await sync();
  if (progress.state === 'exited') {
    log(`job exited with code ${progress.exitCode}`);
    return progress.exitCode;
  }
  throw new ParaError(`the job ended without an exit status: ${progress.state === 'lost' ? progress.reason : 'it is still running'}`, {
    code: 'job-lost',
    hint: `start the session again to resume it: ${invocation('start')} ${state.name} --container`,
  });
}

await runMain(main);
