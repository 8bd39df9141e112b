// Times `node --import tsx scripts/doctor.ts` end to end, as `make doctor` runs it: all checks
// healthy, and the daemon unreachable. Prints medians; targets: under 2 s and under 1 s.
// Builds a throwaway authenticated image from a fake login unless --image names one, and
// times the floor too (the auth container alone, node with tsx alone) to read the figures by.
import { execa } from 'execa';
import { performance } from 'node:perf_hooks';
import { imageAuthStatus } from '../scripts/lib/auth-status.ts';
import { parseArgs, runMain } from '../scripts/lib/cli.ts';
import { UsageError } from '../scripts/lib/errors.ts';
import { PROJECT_ROOT } from '../scripts/lib/image.ts';
import { tempRepo } from '../test/support/doctor.ts';
import { buildAuthImage, fakeHome, runScript } from '../test/support/images.ts';
import { cleanupAll, uniqueName } from '../test/support/resources.ts';

const TARGETS = { healthy: 2000, daemonDown: 1000 };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function measure(label: string, runs: number, once: () => Promise<void>): Promise<number> {
  await once(); // warm-up: tsx's transform cache, the page cache
  const times: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    const started = performance.now();
    await once();
    times.push(performance.now() - started);
  }
  const ms = median(times);
  process.stdout.write(`${label.padEnd(36)} median ${Math.round(ms)} ms over ${runs} runs (min ${Math.round(Math.min(...times))}, max ${Math.round(Math.max(...times))})\n`);
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
    const doctor = (expectedExit: number, extraEnv: Record<string, string> = {}) => async () => {
      const result = await runScript('doctor.ts', ['--image', image], { cwd, env: { ...env, ...extraEnv } });
      if (result.exitCode !== expectedExit) throw new Error(`doctor exited ${result.exitCode}, expected ${expectedExit}\n${result.stdout}${result.stderr}`);
    };
    // The floor doctor cannot go below: the one container it must run, and starting node with tsx.
    await measure('floor: claude auth status container', runs, async () => { await imageAuthStatus(image); });
    await measure('floor: node --import tsx', runs, async () => { await execa(process.execPath, ['--import', 'tsx', '-e', '0'], { cwd: PROJECT_ROOT }); });
    const healthy = await measure('healthy', runs, doctor(0));
    const down = await measure('daemon down', runs, doctor(1, { DOCKER_HOST: 'unix:///nonexistent/path.sock' }));
    const verdict = (ms: number, target: number) => (ms < target ? `under ${target} ms` : `OVER the ${target} ms target`);
    process.stdout.write(`healthy: ${verdict(healthy, TARGETS.healthy)}; daemon down: ${verdict(down, TARGETS.daemonDown)}\n`);
    return 0;
  } finally {
    await cleanupAll();
  }
}

await runMain(main);
