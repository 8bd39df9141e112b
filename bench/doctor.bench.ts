// Times `node --import tsx scripts/doctor.ts` end to end, as `make doctor` runs it: all checks
// healthy, and the daemon unreachable. Prints medians; targets: under 2 s and under 1 s.
// Builds a throwaway authenticated image from a fake login unless --image names one.
import { performance } from 'node:perf_hooks';
import { parseArgs, runMain } from '../scripts/lib/cli.ts';
import { UsageError } from '../scripts/lib/errors.ts';
import { tempRepo } from '../test/support/doctor.ts';
import { buildAuthImage, fakeHome, runScript } from '../test/support/images.ts';
import { cleanupAll, uniqueName } from '../test/support/resources.ts';

const TARGETS = { healthy: 2000, daemonDown: 1000 };

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

async function time(label: string, runs: number, expectedExit: number, args: string[], options: Parameters<typeof runScript>[2]): Promise<number> {
  await runScript('doctor.ts', args, options); // warm-up: tsx's transform cache, the page cache
  const times: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    const started = performance.now();
    const result = await runScript('doctor.ts', args, options);
    times.push(performance.now() - started);
    if (result.exitCode !== expectedExit) {
      throw new Error(`${label}: doctor exited ${result.exitCode}, expected ${expectedExit}\n${result.stdout}${result.stderr}`);
    }
  }
  const ms = median(times);
  process.stdout.write(`${label.padEnd(12)} median ${Math.round(ms)} ms over ${runs} runs (min ${Math.round(Math.min(...times))}, max ${Math.round(Math.max(...times))})\n`);
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
    const healthy = await time('healthy', runs, 0, ['--image', image], { cwd, env });
    const down = await time('daemon down', runs, 1, ['--image', image], { cwd, env: { ...env, DOCKER_HOST: 'unix:///nonexistent/path.sock' } });
    const verdict = (ms: number, target: number) => (ms < target ? `under ${target} ms` : `OVER the ${target} ms target`);
    process.stdout.write(`healthy: ${verdict(healthy, TARGETS.healthy)}; daemon down: ${verdict(down, TARGETS.daemonDown)}\n`);
    return 0;
  } finally {
    await cleanupAll();
  }
}

await runMain(main);
