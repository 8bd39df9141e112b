// Undo work on Ctrl-C / SIGTERM: registered tasks run, then the signal is raised again so the
// process ends with the conventional status (130, 143).
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Task = () => Promise<unknown> | unknown;

const tasks = new Set<Task>();
let installed = false;
let running = false;

async function handle(signal: NodeJS.Signals): Promise<void> {
  if (running) return;
  running = true;
  process.stderr.write(`\ninterrupted (${signal}): cleaning up\n`);
  for (const task of [...tasks].reverse()) {
    try {
      await task();
    } catch (error) {
      process.stderr.write(`cleanup step failed: ${error instanceof Error ? error.message : String(error)}\n`);
    }
  }
  process.removeAllListeners('SIGINT');
  process.removeAllListeners('SIGTERM');
  process.kill(process.pid, signal);
}

/** Runs `task` if the process is interrupted before the returned function is called. */
export function onInterrupt(task: Task): () => void {
  if (!installed) {
    installed = true;
    process.on('SIGINT', () => void handle('SIGINT'));
    process.on('SIGTERM', () => void handle('SIGTERM'));
  }
  tasks.add(task);
  return () => {
    tasks.delete(task);
  };
}

/** A private temporary folder for `run`, removed afterwards, on failure and on Ctrl-C/SIGTERM. */
export async function withTempDir<T>(prefix: string, run: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  const remove = () => rm(dir, { recursive: true, force: true });
  const stop = onInterrupt(remove);
  try {
    return await run(dir);
  } finally {
    stop();
    await remove();
  }
}
