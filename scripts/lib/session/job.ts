// A background job in a session container. A root-owned wrapper (the agent cannot write its
// folder, signal it or redirect its files) runs the command as the agent's user and records
// its output and exit status inside the container; the host reads them with docker exec.
import { ParaError } from '../errors.ts';
import { RUN_DIR as JOB_DIR, WAIT_FOR_REPOSITORY } from './agent-repo.ts';
import { exec } from './container.ts';
import { WAIT_FOR_PROXY } from '../egress/rules.ts';
import type { JobState } from './store.ts';
import { randomBytes } from 'node:crypto';
import type { ContainerInfo, Engine } from '../engine/engine.ts';
import type { JobStatus } from './agent-state.ts';

// Runs detached from the exec that starts it (setsid, no stdio), as root: waits for the agent's
// repository, runs the command as the agent's user, records the exit status.
const RUNNER = `d="${JOB_DIR}"
if ! ( ${WAIT_FOR_REPOSITORY} ) 2>> "$d/output.log"; then echo 125 > "$d/exit-code.tmp"; mv "$d/exit-code.tmp" "$d/exit-code"; exit 0; fi
${WAIT_FOR_PROXY}
setpriv --reuid=para --regid=para --init-groups -- "$@" >> "$d/output.log" 2>&1 < /dev/null
echo $? > "$d/exit-code.tmp"; mv "$d/exit-code.tmp" "$d/exit-code"`;

// Prepares the job's files and starts the runner; returns once its pid is recorded, so the
// job is "running" from the first status check on.
const START_SCRIPT = `set -eu
d="${JOB_DIR}"
mkdir -p "$d"; chmod 0755 "$d"
rm -f "$d/exit-code" "$d/exit-code.tmp" "$d/job.pid" "$d/job.id"
: > "$d/output.log"
printf '%s\n' "$1" > "$d/job.id"; shift
runner="$1"; shift
setsid sh -c "$runner" para-job "$@" < /dev/null > /dev/null 2>&1 &
echo $! > "$d/job.pid"`;

/** Starts `command` in the background; returns the container's start time (to notice a restart). */
export async function startJob(engine: Engine, container: string, workdir: string, command: string[]): Promise<JobState> {
  const info = await engine.inspectContainer(container);
  if (!info?.State.Running) throw new ParaError(`the container ${container} is not running`, { code: 'container-stopped' });
  const id = randomBytes(8).toString('hex');
  await exec(engine, container, ['sh', '-c', START_SCRIPT, 'para-job-start', id, RUNNER, ...command], { root: true, workdir, asAgent: true });
  return { command, startedAt: new Date().toISOString(), containerStartedAt: info.State.StartedAt, exitCode: null, finishedAt: null, id };
}

export type JobProgress =
  | { state: 'running' }
  | { state: 'exited'; exitCode: number }
  /** The container stopped or restarted while the job ran: it will never report an exit status. */
  | { state: 'lost'; reason: string };

const STATUS_SCRIPT = `d="${JOB_DIR}"
if [ -f "$d/exit-code" ]; then echo "exit $(cat "$d/exit-code")"
elif [ -f "$d/job.pid" ] && kill -0 "$(cat "$d/job.pid")" 2>/dev/null; then echo running
# The runner writes its exit code, then ends: one that ended since the first look has its code now.
elif [ -f "$d/exit-code" ]; then echo "exit $(cat "$d/exit-code")"
else echo gone; fi`;

/** Where a job stands, from the container (never from a file the agent can write). */
export async function jobProgress(engine: Engine, container: string, job: JobState): Promise<JobProgress> {
  const info = await engine.inspectContainer(container);
  if (!info) return { state: 'lost', reason: 'its container is gone' };
  if (!info.State.Running) return { state: 'lost', reason: 'its container is stopped' };
  if (job.containerStartedAt && info.State.StartedAt !== job.containerStartedAt) return { state: 'lost', reason: 'its container was restarted' };
  const result = await exec(engine, container, ['sh', '-c', STATUS_SCRIPT], { root: true, allowFailure: true });
  const line = result.stdout.trim();
  const exited = /^exit (\d{1,3})$/.exec(line);
  if (exited) return { state: 'exited', exitCode: Number(exited[1]) };
  if (line === 'running') return { state: 'running' };
  return { state: 'lost', reason: 'its runner is gone' };
}

/**
 * Where a job stands, and the job with its exit status once it has one (a recorded status is
 * final, so a finished container is not asked again). The caller stores a changed job.
 */
export async function settleJob(engine: Engine, container: string, job: JobState): Promise<{ job: JobState; progress: JobProgress }> {
  if (job.exitCode !== null) return { job, progress: { state: 'exited', exitCode: job.exitCode } };
  const progress = await jobProgress(engine, container, job);
  return { job: progress.state === 'exited' ? { ...job, exitCode: progress.exitCode, finishedAt: new Date().toISOString() } : job, progress };
}

/**
 * settleJob from a container's status line (its job part is written by root from root's files)
 * and its inspect data, with no command run in the container.
 */
export function settleFromStatus(job: JobState, status: JobStatus, info: ContainerInfo): { job: JobState; progress: JobProgress } | null {
  if (job.exitCode !== null) return { job, progress: { state: 'exited', exitCode: job.exitCode } };
  // A line about another job (an earlier one, or one started before ids), or none yet: ask the container.
  if (!job.id || (status.state !== 'none' && status.id !== job.id)) return null;
  const progress: JobProgress = !info.State.Running
    ? { state: 'lost', reason: 'its container is stopped' }
    : job.containerStartedAt && info.State.StartedAt !== job.containerStartedAt
      ? { state: 'lost', reason: 'its container was restarted' }
      : status.state === 'exited'
        ? { state: 'exited', exitCode: status.exitCode }
        : status.state === 'running'
          ? { state: 'running' }
          : // The status line lags the job's start by up to two seconds: a job just started has no pid there yet.
            Date.now() - Date.parse(job.startedAt) < 10_000
            ? { state: 'running' }
            : { state: 'lost', reason: 'its runner is gone' };
  return { job: progress.state === 'exited' ? { ...job, exitCode: progress.exitCode, finishedAt: new Date().toISOString() } : job, progress };
}

/** The job's output so far. */
export async function jobOutput(engine: Engine, container: string, write: (chunk: Buffer) => void): Promise<void> {
  // Streamed, never buffered: an output of any size arrives whole.
  const result = await exec(engine, container, ['sh', '-c', 'test ! -e "$1" || cat "$1"', 'para-output', `${JOB_DIR}/output.log`], {
    root: true,
    allowFailure: true,
    onStdout: write,
    timeoutMs: undefined,
  });
  if (result.exitCode !== 0)
    throw new ParaError(`the job's output could not be read from ${container}: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, {
      code: 'output-unreadable',
    });
}

/** Streams the output to `write` until the job's wrapper ends (or the container stops). */
export async function followJob(engine: Engine, container: string, write: (chunk: Buffer) => void): Promise<void> {
  const script = `d="${JOB_DIR}"; exec tail -c +1 -s 0.2 -f --pid="$(cat "$d/job.pid")" "$d/output.log"`;
  await exec(engine, container, ['sh', '-c', script], { root: true, allowFailure: true, onStdout: write, timeoutMs: undefined });
}
