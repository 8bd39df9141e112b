// Runs every test/*.test.ts in one process (so test images are built once), removes what the
// tests made, and ends with the line "N passed, N failed".
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const filter = process.argv[2];
const files = fs.readdirSync(here)
  .filter((name) => name.endsWith('.test.ts') && (!filter || name.includes(filter)))
  .sort();

// uvu queues suites instead of running them as soon as they are declared.
(globalThis as { UVU_DEFER?: number }).UVU_DEFER = 1;
const queue = ((globalThis as { UVU_QUEUE?: unknown[][] }).UVU_QUEUE ??= []);
const { exec } = await import('uvu');
const { cleanupAll } = await import('./support/resources.ts');

let captured = '';
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
  captured += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
  return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
}) as typeof process.stdout.write;

let loadFailures = 0;
for (const [index, file] of files.entries()) {
  (globalThis as { UVU_INDEX?: number }).UVU_INDEX = index;
  queue.push([file]);
  try {
    await import(pathToFileURL(path.join(here, file)).href);
  } catch (error) {
    loadFailures += 1;
    process.stderr.write(`could not load ${file}: ${error instanceof Error ? error.stack : String(error)}\n`);
  }
}

try {
  await exec(false);
} finally {
  await cleanupAll();
}
process.stdout.write = write;
const plain = captured.replace(/\u001b\[[0-9;]*m/g, '');
const total = Number(/Total:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const passed = Number(/Passed:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const skipped = Number(/Skipped:\s+(\d+)/.exec(plain)?.[1] ?? 0);
const failed = total - passed - skipped + loadFailures;
process.stdout.write(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
if (failed > 0 || total === 0) process.exitCode = 1;
