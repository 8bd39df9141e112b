// make bench-remote: session start on another engine (a docker context), for a small repository
// and a synthetic one of 5,000 files / 50 MB, the first session (the engine's mirror empty) and the
// second (the mirror at work), against the raw commands: git bundle create + docker run -d +
// docker exec -i git clone of the bundle.
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import fs from 'fs-extra';
import path from 'node:path';
import { parseArgs, runMain } from '../scripts/lib/cli.ts';
import { median, timed } from './measure.ts';
import { repoHash } from '../scripts/lib/repo.ts';
import { UsageError } from '../scripts/lib/errors.ts';
import { PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { makeRepo, type TestRepo } from '../test/support/repos.ts';
import { cleanupAll, onCleanup, RUN_ID, TEST_LABEL } from '../test/support/resources.ts';

const USAGE = `Usage: node --import tsx bench/remote.bench.ts --context NAME --image IMAGE [--rounds N]

Times start.ts NAME --container --detach --context NAME --egress none on that engine (IMAGE must be
there: make image CONTEXT=NAME, or docker save | docker --context NAME load) for a small repository
and for one of 5,000 files / 50 MB: the first session (the engine's mirror of the history empty) and
the second (only what is new travels), against git bundle create + docker run -d + docker exec -i
git clone of the bundle. Everything it creates is removed at the end.`;

/** 5,000 files of 10 KB of random bytes (50 MB that do not compress), in 50 folders, one commit. */
async function largeRepo(): Promise<TestRepo> {
  const repo = await makeRepo();
  for (let folder = 0; folder < 50; folder += 1) {
    const dir = path.join(repo.root, `d${folder}`);
    await fs.mkdir(dir);
    for (let file = 0; file < 100; file += 1) await fs.writeFile(path.join(dir, `f${file}.bin`), randomBytes(10 * 1024));
  }
  await repo.git(['add', '-A']);
  await repo.git(['commit', '-q', '-m', 'large']);
  return repo;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['context', 'image', 'rounds'], boolean: ['help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!args.context || !args.image) throw new UsageError('give --context NAME and --image IMAGE', 'see --help');
  const rounds = Number(args.rounds || 3);
  const context = String(args.context);
  const image = String(args.image);
  const docker = (dockerArgs: string[], input?: { inputFile?: string }) =>
    execa('docker', ['--context', context, ...dockerArgs], { ...input, env: { DOCKER_HOST: undefined, DOCKER_CONTEXT: undefined } });
  const bundle = path.join(PROJECT_ROOT, 'dist', 'start.mjs');
  try {
    const lines: string[] = [`session start on docker context ${context} (${rounds} rounds, image ${image}; medians):`];
    for (const [label, make] of [
      ['small repository (1 file)', makeRepo],
      ['synthetic repository (5,000 files, 50 MB)', largeRepo],
    ] as const) {
      const raw: number[] = [];
      const first: number[] = [];
      const second: number[] = [];
      for (let round = 0; round < rounds; round += 1) {
        const repo = await make();
        const mirror = `para-mirror-${repoHash(repo.root)}`;
        onCleanup(async () => {
          const ids = (await docker(['ps', '-aq', '--filter', `label=dev.para.repo=${repo.root}`]).catch(() => ({ stdout: '' }))).stdout
            .split('\n')
            .filter(Boolean);
          if (ids.length) await docker(['rm', '-f', ...ids]).catch(() => undefined);
          const volumes = (await docker(['volume', 'ls', '-q', '--filter', `label=dev.para.repo=${repo.root}`]).catch(() => ({ stdout: '' }))).stdout
            .split('\n')
            .filter(Boolean);
          if (volumes.length) await docker(['volume', 'rm', ...volumes]).catch(() => undefined);
        });
        // The raw commands: a bundle of the history, a container, the bundle cloned inside it.
        const name = `para-bench-raw-${RUN_ID}-${round}-${label.length}`;
        raw.push(
          await timed(async () => {
            const file = path.join(repo.root, '..', `${path.basename(repo.root)}.bundle`);
            await execa('git', ['bundle', 'create', '-q', file, 'HEAD'], { cwd: repo.root });
            await docker([
              'run',
              '-d',
              '--init',
              '--network',
              'none',
              '--name',
              name,
              '--label',
              `${TEST_LABEL}=${RUN_ID}`,
              '--label',
              `dev.para.repo=${repo.root}`,
              image,
              'sleep',
              'infinity',
            ]);
            await docker(['exec', '-i', name, 'sh', '-c', 'cat > /tmp/h.bundle && git clone -q /tmp/h.bundle /tmp/work'], { inputFile: file });
          }),
        );
        const start = (session: string) =>
          execa(process.execPath, [bundle, session, '--container', '--detach', '--context', context, '--egress', 'none', '--image', image], {
            cwd: repo.root,
            env: { ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`, DOCKER_HOST: undefined, DOCKER_CONTEXT: undefined },
            stdin: 'ignore',
          });
        await docker(['volume', 'rm', mirror]).catch(() => undefined);
        first.push(await timed(() => start('first')));
        second.push(await timed(() => start('second')));
      }
      const m = (values: number[]) => `${(median(values) / 1000).toFixed(2)} s`;
      lines.push(
        `  ${label}:`,
        `    raw: git bundle create + docker run -d + docker exec -i git clone   ${m(raw)}`,
        `    start.ts, first session (the mirror empty)                         ${m(first)}  (ratio ${(median(first) / median(raw)).toFixed(2)})`,
        `    start.ts, second session (the mirror at work)                      ${m(second)}  (ratio ${(median(second) / median(raw)).toFixed(2)})`,
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    return 0;
  } finally {
    await cleanupAll();
  }
}

await runMain(main);
