// Everything a test run creates carries this run's label or is tracked here, and is removed at the end.
import { randomBytes } from 'node:crypto';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { docker } from '../../scripts/lib/engine/docker.ts';

/** One id for the whole run: test/run.ts hands it to the processes it starts. */
export const RUN_ID = process.env.PARA_TEST_RUN_ID || randomBytes(4).toString('hex');
/** Set in the processes test/run.ts starts: the run's parent builds and removes what they share. */
const CHILD = process.env.PARA_TEST_SHARED_IMAGES === '1';
export const TEST_LABEL = 'dev.para.test-run';
export const TEST_LABEL_VALUE = RUN_ID;

const images = new Set<string>();

/** The egress proxy image of this run: every script a test runs (build-image.ts included) uses it, never para-egress:latest. */
export const EGRESS_IMAGE = `para-egress-test-${RUN_ID}:latest`;
process.env.PARA_EGRESS_IMAGE = EGRESS_IMAGE;
/** The credential-free image of this run (images.ts builds it): a brokered session's base when its login image lost its parent. */
process.env.PARA_CLAUDE_IMAGE = `para-claude-test-${RUN_ID}:latest`;
/** The credential brokers of this run (one per egress network): never the user's para-broker. Per test process: a clean in one file never removes a broker another file is about to use. */
export const BROKER_NAME = `para-broker-test-${RUN_ID}-${randomBytes(2).toString('hex')}`;
process.env.PARA_BROKER = BROKER_NAME;
const dirs = new Set<string>();
const cleanups: Array<() => Promise<unknown>> = [];

export function uniqueName(prefix: string): string {
  return `${prefix}-${RUN_ID}-${randomBytes(3).toString('hex')}`;
}

export function trackImage(ref: string): string {
  images.add(ref);
  return ref;
}

/** An image every test file of the run uses: removed by whichever process owns the run. */
export function sharedImage(ref: string): string {
  return CHILD ? ref : trackImage(ref);
}

export async function tempDir(prefix = 'para-test-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

export function onCleanup(task: () => Promise<unknown>): void {
  cleanups.push(task);
}

/** Containers labelled with this run's id, and every tracked image and folder. */
export async function cleanupAll(): Promise<void> {
  for (const task of cleanups.reverse()) {
    try {
      await task();
    } catch (error) {
      process.stderr.write(`cleanup: ${String(error)}\n`);
    }
  }
  try {
    // The sweep of everything labelled for the run is the parent's, once every file has ended.
    const ids = CHILD ? [] : (await docker(['ps', '-aq', '--filter', `label=${TEST_LABEL}=${RUN_ID}`])).stdout.split('\n').filter(Boolean);
    if (ids.length) await docker(['rm', '-f', '-v', ...ids], { allowFailure: true });
    // Named volumes of the run (a broker's socket volume outlives its sessions).
    const volumes = CHILD ? [] : (await docker(['volume', 'ls', '-q', '--filter', `label=${TEST_LABEL}=${RUN_ID}`])).stdout.split('\n').filter(Boolean);
    if (volumes.length) await docker(['volume', 'rm', '-f', ...volumes], { allowFailure: true });
    for (const ref of [...images].reverse()) await docker(['image', 'rm', '-f', ref], { allowFailure: true });
  } catch (error) {
    process.stderr.write(`cleanup: docker unavailable: ${String(error)}\n`);
  }
  for (const dir of dirs) await fs.rm(dir, { recursive: true, force: true });
}

/** A suite hook whose failure is printed: uvu drops an error thrown by a before hook without a word (its suite just runs no test). */
export function loudly<T>(hook: (state: T) => Promise<void>): (state: T) => Promise<void> {
  return async (state) => {
    try {
      await hook(state);
    } catch (error) {
      process.stdout.write(`\n  a suite hook failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
      throw error;
    }
  };
}
