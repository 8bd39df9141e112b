// Runs the tests and ends with the line "N passed, N failed". The parent builds what every file
// shares once (the script bundles in dist/, the test images), then runs each test/*.test.ts in a
// process of its own, a few at a time, and removes what the run made. `--one FILE` is a child.
import { execa } from 'execa';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.dirname(here);
const COUNTS = /^(\d+) passed, (\d+) failed/m;

/** One test file in this process: uvu's own output, then the counts line. */
async function runOne(file: string): Promise<void> {
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
  (globalThis as { UVU_INDEX?: number }).UVU_INDEX = 0;
  queue.push([file]);
  try {
    await import(pathToFileURL(path.join(here, file)).href);
  } catch (error) {
    loadFailures += 1;
    process.stderr.write(`could not load ${file}: ${error instanceof Error ? error.stack : String(error)}\n`);
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
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  if (failed > 0 || total === 0) process.exitCode = 1;
}

async function runAll(filter: string | undefined): Promise<void> {
  const files = fs
    .readdirSync(here)
    .filter((name) => name.endsWith('.test.ts') && (!filter || name.includes(filter)))
    .sort();
  const { RUN_ID, cleanupAll } = await import('./support/resources.ts');
  const { sessionTestImage, testClaudeImage, testEgressImage } = await import('./support/images.ts');
  let passed = 0;
  let failed = 0;
  try {
    // Built once for every file: the bundles the scripts run from, and the shared images.
    const built = await execa('make', ['-s', 'build'], { cwd: root, reject: false });
    if (built.exitCode !== 0) throw new Error(`make build failed:\n${built.stderr}`);
    await Promise.all([testClaudeImage(), testEgressImage()]);
    await sessionTestImage();
    const env = { PARA_TEST_RUN_ID: RUN_ID, PARA_TEST_SHARED_IMAGES: '1' };
    const parallel = Math.max(1, Number(process.env.PARA_TEST_JOBS) || Math.min(4, os.availableParallelism() + 1));
    // Longest first, so the slow files do not start last.
    const weight = (name: string) =>
      ['containment', 'start', 'lifecycle', 'build-image', 'doctor', 'daemon', 'login', 'para', 'hosts'].findIndex((w) => name.startsWith(w));
    const pending = [...files].sort((a, b) => (weight(a) === -1 ? 99 : weight(a)) - (weight(b) === -1 ? 99 : weight(b)));
    const worker = async () => {
      for (let file = pending.shift(); file; file = pending.shift()) {
        const started = Date.now();
        // A temporary folder per file: a file that searches the temporary folders for a fake
        // secret sees its own, not a build of another file running beside it.
        const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'para-run-'));
        fs.chmodSync(tmp, 0o755);
        const child = await execa(process.execPath, ['--import', 'tsx', path.join(here, 'run.ts'), '--one', file], {
          cwd: root,
          env: { ...env, TMPDIR: tmp },
          reject: false,
          all: true,
        });
        fs.rmSync(tmp, { recursive: true, force: true });
        const output = String(child.all ?? '');
        const counts = COUNTS.exec(output.split('\n').slice(-3).join('\n'));
        passed += Number(counts?.[1] ?? 0);
        failed += counts ? Number(counts[2]) : 1;
        process.stdout.write(`${output.replace(COUNTS, '').trimEnd()}\n  (${file}: ${((Date.now() - started) / 1000).toFixed(1)} s)\n\n`);
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  } catch (error) {
    failed += 1;
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  } finally {
    await cleanupAll();
  }
  process.stdout.write(`${passed} passed, ${failed} failed\n`);
  if (failed > 0 || passed === 0) process.exitCode = 1;
}

const args = process.argv.slice(2);
if (args[0] === '--one') await runOne(args[1]);
else await runAll(args[0]);
