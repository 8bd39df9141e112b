// Times doctor end to end as `make doctor` runs it (node dist/doctor.mjs) and through tsx: all
// checks healthy, and the daemon unreachable. Prints medians; targets: under 2 s and under 1 s.
// Builds a throwaway authenticated image from a fake login unless --image names one, and
// times the floor too (the auth container alone, bare node) to read the figures by.
import { execa } from 'execa';
import fs from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { imageAuthStatus } from '../scripts/lib/image/auth-status.ts';
import { parseArgs, runMain } from '../scripts/lib/cli.ts';
import { median } from './measure.ts';
import { UsageError } from '../scripts/lib/errors.ts';
import { PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { tempRepo } from '../test/support/doctor.ts';
import { buildAuthImage, fakeHome, TSX_LOADER } from '../test/support/images.ts';
import { cleanupAll, RUN_ID, TEST_LABEL, uniqueName } from '../test/support/resources.ts';
import { shellEngine } from '../scripts/lib/engine/engine.ts';

const TARGETS = { healthy: 2000, daemonDown: 1000 };
const BUNDLE = path.join(PROJECT_ROOT, 'dist', 'doctor.mjs');

async function measure(label: string, runs: number, once: () => Promise<void>): Promise<number> {
  await once(); // warm-up: tsx's transform cache, the page cache
  const times: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    const started = performance.now();
    await once();
    times.push(performance.now() - started);
  }
  const ms = median(times);
  process.stdout.write(
    `${label.padEnd(42)} median ${Math.round(ms)} ms over ${runs} runs (min ${Math.round(Math.min(...times))}, max ${Math.round(Math.max(...times))})\n`,
  );
  return ms;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['image', 'runs'], boolean: ['help'], alias: { h: 'help' }, default: { runs: '5' } });
  if (args.help) {
    process.stdout.write('Usage: node --import tsx bench/doctor.bench.ts [--image IMAGE] [--runs N]\n');
    return 0;
  }
  const runs = Number(args.runs);
  if (!Number.isInteger(runs) || runs < 1) throw new UsageError(`--runs must be a positive integer, got "${args.runs}"`);
  if (!fs.existsSync(BUNDLE)) throw new UsageError(`${BUNDLE} is missing`, 'run: make build (make bench-doctor does it)');
  try {
    const cwd = await tempRepo();
    let image = args.image as string;
    let env: Record<string, string | undefined> = {};
    if (!image) {
      const home = await fakeHome();
      image = uniqueName('para-doctor-bench');
      process.stderr.write(`building ${image} from a fake login (pass --image to time an existing image)\n`);
      const built = await buildAuthImage(image, home);
      if (built.exitCode !== 0) throw new Error(`could not build the bench image:\n${built.stderr}`);
      env = { HOME: home, CLAUDE_CONFIG_DIR: undefined };
    }
    const doctor =
      (via: 'bundle' | 'tsx', expectedExit: number, extraEnv: Record<string, string> = {}) =>
      async () => {
        const entry = via === 'bundle' ? [BUNDLE] : ['--import', TSX_LOADER, path.join(PROJECT_ROOT, 'scripts', 'doctor.ts')];
        const result = await execa(process.execPath, [...entry, '--image', image], {
          cwd,
          env: { PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`, ...env, ...extraEnv },
          reject: false,
          stdin: 'ignore',
        });
        if (result.exitCode !== expectedExit)
          throw new Error(`doctor (${via}) exited ${result.exitCode}, expected ${expectedExit}\n${result.stdout}${result.stderr}`);
      };
    const down = { DOCKER_HOST: 'unix:///nonexistent/path.sock' };
    // The floor doctor cannot go below: the one container it must run, and starting node.
    await measure('floor: claude auth status container', runs, async () => {
      await imageAuthStatus(shellEngine, image);
    });
    await measure('floor: node -e 0', runs, async () => {
      await execa(process.execPath, ['-e', '0']);
    });
    const healthy = await measure('healthy (make doctor: dist bundle)', runs, doctor('bundle', 0));
    const daemonDown = await measure('daemon down (make doctor: dist bundle)', runs, doctor('bundle', 1, down));
    await measure('healthy (npx tsx scripts/doctor.ts)', runs, doctor('tsx', 0));
    await measure('daemon down (npx tsx scripts/doctor.ts)', runs, doctor('tsx', 1, down));
    const verdict = (ms: number, target: number) => (ms < target ? `under ${target} ms` : `OVER the ${target} ms target`);
    process.stdout.write(`make doctor, healthy: ${verdict(healthy, TARGETS.healthy)}; daemon down: ${verdict(daemonDown, TARGETS.daemonDown)}\n`);
    return 0;
  } finally {
    await cleanupAll();
  }
}

await runMain(main);
