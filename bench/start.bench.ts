// make bench: the median time of `start.ts NAME --container --detach` against the raw
// `git worktree add -b` + `docker run -d` it wraps, measured alternately in one run on one image.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { parseArgs, runMain } from '../scripts/lib/cli.ts';
import { benchImage } from './images.ts';
import { line, mebibytes, median, timed } from './measure.ts';
import { labels, MANAGED_BY } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { EGRESS_DIR } from '../scripts/lib/egress/proxy.ts';
import { shellEngine } from '../scripts/lib/engine/engine.ts';
import { UsageError } from '../scripts/lib/errors.ts';
import { PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { testEgressImage, TSX_LOADER } from '../test/support/images.ts';
import { testNetwork } from '../test/support/internet.ts';
import { makeRepo, type TestRepo } from '../test/support/repos.ts';
import { cleanupAll, RUN_ID, TEST_LABEL } from '../test/support/resources.ts';

const USAGE = `Usage: node --import tsx bench/start.bench.ts [--rounds N] [--image IMAGE]

Times start.ts NAME --container --detach (the default egress: the session on no network, its
proxy and forwarder beside it) against the raw git worktree add -b + docker run -d on a network,
alternating them, in a temporary repository and on a docker network of its own; also start.ts
--egress none, and the memory the proxy and the forwarder use. Without --image it builds a
throwaway authenticated image from a fake login with scripts/build-image.ts, and the egress
proxy image from the test base image. Everything it creates is removed at the end.`;

const GOAL = 1.5;

/**
 * What a user would type by hand for a worktree and a container: git worktree add -b, then
 * docker run -d with the folder mounted (and the objects read-only, as para mounts them).
 */
async function rawStart(repo: TestRepo, image: string, name: string, network: string, runtime?: string): Promise<void> {
  const worktree = path.join(repo.root, '.para', 'worktrees', name);
  const objects = path.join(repo.root, '.git', 'objects');
  await execa('git', ['worktree', 'add', '-q', '-b', `para/${name}`, worktree, 'HEAD'], { cwd: repo.root, env: repo.env });
  const mount = (source: string, target: string, readonly = false) => ['--mount', `type=bind,source=${source},target=${target}${readonly ? ',readonly' : ''}`];
  await execa('docker', [
    'run',
    '-d',
    '--init',
    ...(runtime ? ['--runtime', runtime] : []),
    '--network',
    network,
    '--name',
    `para-bench-${RUN_ID}-${name}`,
    '--label',
    `${labels.session}=${name}`,
    '--label',
    `${labels.repo}=${repo.root}`,
    '--label',
    `${labels.managedBy}=${MANAGED_BY}`,
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    ...mount(objects, '/para/host-objects', true),
    ...mount(worktree, worktree),
    '--workdir',
    worktree,
    image,
    'sleep',
    'infinity',
  ]);
}

/**
 * The same isolation by hand: the session container on no network, a proxy on the network
 * (para's egress image, as locked down as para runs it, serving a unix socket in its volume) and
 * a forwarder in the session's network namespace relaying loopback to that socket; typed one
 * after another, as a person would. Only squid itself is left out (socat stands in for it).
 */
async function rawIsolatedStart(repo: TestRepo, image: string, egressImage: string, egressUser: string, name: string, network: string): Promise<void> {
  const prefix = `para-bench-${RUN_ID}-${name}`;
  const volume = `${prefix}-egress`;
  const tag = ['--label', `${TEST_LABEL}=${RUN_ID}`, '--label', `${labels.repo}=${repo.root}`, '--label', `${labels.managedBy}=${MANAGED_BY}`];
  const locked = [
    '--read-only',
    '--cap-drop',
    'ALL',
    '--security-opt',
    'no-new-privileges',
    '--user',
    egressUser,
    '--init',
    '--memory',
    '128m',
    '--pids-limit',
    '64',
  ];
  const egress = (readonly: boolean) => ['--mount', `type=volume,source=${volume},target=${EGRESS_DIR}${readonly ? ',readonly' : ''}`];
  // The worktree and the session container as above, on no network; then the proxy and the forwarder.
  await rawStart(repo, image, name, 'none');
  await execa('docker', ['volume', 'create', '--label', `${TEST_LABEL}=${RUN_ID}`, volume]);
  await execa('docker', [
    'run',
    '-d',
    '--name',
    `${prefix}-proxy`,
    ...tag,
    '--network',
    network,
    ...locked,
    ...egress(false),
    egressImage,
    'socat',
    `UNIX-LISTEN:${EGRESS_DIR}/raw.sock,fork`,
    'TCP:127.0.0.1:3128',
  ]);
  await execa('docker', [
    'run',
    '-d',
    '--name',
    `${prefix}-forward`,
    ...tag,
    '--network',
    `container:${prefix}`,
    ...locked,
    ...egress(true),
    egressImage,
    'socat',
    'TCP-LISTEN:3128,bind=127.0.0.1,reuseaddr,fork',
    `UNIX-CONNECT:${EGRESS_DIR}/raw.sock`,
  ]);
}

const BUNDLE = path.join(PROJECT_ROOT, 'dist', 'start.mjs');

/** start.ts as `make start` runs it (the dist/ bundle), or through tsx as `npx tsx scripts/start.ts`. */
function startScript(repo: TestRepo, args: string[], via: 'bundle' | 'tsx' = 'bundle') {
  const entry = via === 'bundle' ? [BUNDLE] : ['--import', TSX_LOADER, path.join(PROJECT_ROOT, 'scripts', 'start.ts')];
  return execa(process.execPath, [...entry, ...args], {
    cwd: repo.root,
    env: { ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
    stdin: 'ignore',
  });
}

/** The median memory docker stats reports for the sessions' proxies and forwarders. */
async function proxyMemory(repo: TestRepo): Promise<{ proxy: string; forwarder: string; count: number }> {
  const names = (await docker(['ps', '--format', '{{.Names}}', '--filter', `label=${labels.repo}=${repo.root}`])).stdout.split('\n').filter(Boolean);
  const pick = async (suffix: string) => {
    const chosen = names.filter((n) => n.endsWith(suffix));
    if (!chosen.length) return { text: 'none running', count: 0 };
    const stats = (await docker(['stats', '--no-stream', '--format', '{{.MemUsage}}', ...chosen])).stdout.split('\n').filter(Boolean);
    const mib = stats.map(mebibytes);
    return { text: `${median(mib).toFixed(1)} MiB`, count: chosen.length };
  };
  const proxy = await pick('-proxy');
  const forwarder = await pick('-forward');
  return { proxy: proxy.text, forwarder: forwarder.text, count: proxy.count };
}

/** Median MiB (docker stats) of this repository's idle session containers under a runtime. */
async function sessionMemory(repo: TestRepo, runtime: string): Promise<string> {
  const ids = (await docker(['ps', '-q', '--filter', `label=${labels.repo}=${repo.root}`])).stdout.split('\n').filter(Boolean);
  const chosen: string[] = [];
  for (const id of ids) {
    const format = `{{.HostConfig.Runtime}} {{index .Config.Labels "${labels.role}"}}`;
    const [used, role] = (await docker(['inspect', '--format', format, id])).stdout.trim().split(' ');
    if (used === runtime && !role) chosen.push(id);
  }
  if (!chosen.length) return 'none running';
  const stats = (await docker(['stats', '--no-stream', '--format', '{{.MemUsage}}', ...chosen])).stdout.split('\n').filter(Boolean);
  const mib = stats.map(mebibytes);
  return `${median(mib).toFixed(1)} MiB (${chosen.length} containers)`;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['rounds', 'image'], boolean: ['help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const rounds = Number(args.rounds || 7);
  if (!(await fs.pathExists(BUNDLE))) throw new UsageError(`${BUNDLE} is missing`, 'run: make build (make bench does it)');
  if (!Number.isInteger(rounds) || rounds < 1) throw new UsageError(`--rounds must be a positive integer, got ${args.rounds}`);
  try {
    const image = await benchImage(args.image || undefined, `para-bench-${RUN_ID}:auth`);
    await testEgressImage();
    // A network of its own, removed at the end with what is still on it (the credential broker the starts made on it).
    const { network } = await testNetwork([]);
    const repo = await makeRepo();
    process.stderr.write(`timing ${rounds} rounds in ${repo.root} on ${image}\n`);
    const session = (name: string) => [name, '--container', '--detach', '--egress-network', network, '--image', image];
    const isolated = (name: string) => [name, '--container', '--detach', '--egress', 'none', '--image', image];
    // One untimed start of each kind warms the page cache, tsx's transform cache and the engine.
    const egressImage = await testEgressImage();
    const egressUser = String((await docker(['image', 'inspect', '--format', `{{index .Config.Labels "${labels.egressUser}"}}`, egressImage])).stdout).trim();
    await rawStart(repo, image, 'warm-raw', network);
    await rawIsolatedStart(repo, image, egressImage, egressUser, 'warm-iso', network);
    await startScript(repo, session('warm-start'));
    await startScript(repo, isolated('warm-none'));
    await startScript(repo, session('warm-tsx'), 'tsx');

    const raw: number[] = [];
    const rawIso: number[] = [];
    const start: number[] = [];
    const none: number[] = [];
    const viaTsx: number[] = [];
    const help: number[] = [];
    const helpTsx: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      const runRaw = async () => raw.push(await timed(() => rawStart(repo, image, `raw-${round}`, network)));
      const runIso = async () => rawIso.push(await timed(() => rawIsolatedStart(repo, image, egressImage, egressUser, `iso-${round}`, network)));
      const runStart = async () => start.push(await timed(() => startScript(repo, session(`start-${round}`))));
      const runNone = async () => none.push(await timed(() => startScript(repo, isolated(`none-${round}`))));
      const runTsx = async () => viaTsx.push(await timed(() => startScript(repo, session(`tsx-${round}`), 'tsx')));
      // Rotate the order so no side always runs on a warmer machine.
      const order = [runRaw, runIso, runStart, runNone, runTsx];
      for (let i = 0; i < order.length; i += 1) await order[(i + round) % order.length]();
      help.push(await timed(() => startScript(repo, ['--help'])));
      helpTsx.push(await timed(() => startScript(repo, ['--help'], 'tsx')));
    }
    // gVisor, when the engine offers it: para's start and the raw docker run, each under runsc.
    const gvisor = (await shellEngine.runtimes()).includes('runsc');
    const rawRunsc: number[] = [];
    const startRunsc: number[] = [];
    if (gvisor) {
      await rawStart(repo, image, 'warm-raw-runsc', network, 'runsc');
      await startScript(repo, [...session('warm-runsc'), '--runtime', 'runsc']);
      for (let round = 0; round < rounds; round += 1) {
        const runRaw = async () => rawRunsc.push(await timed(() => rawStart(repo, image, `raw-runsc-${round}`, network, 'runsc')));
        const runStart = async () => startRunsc.push(await timed(() => startScript(repo, [...session(`runsc-${round}`), '--runtime', 'runsc'])));
        for (const run of round % 2 ? [runRaw, runStart] : [runStart, runRaw]) await run();
      }
    }
    const memory = await proxyMemory(repo);
    const [memoryRunc, memoryRunsc] = await Promise.all([sessionMemory(repo, 'runc'), gvisor ? sessionMemory(repo, 'runsc') : Promise.resolve('')]);
    const ratio = median(start) / median(raw);
    const ratioTsx = median(viaTsx) / median(raw);
    process.stdout.write(
      [
        `start.ts against the raw commands it wraps (${rounds} rounds, image ${image}):`,
        line('raw: git worktree add -b + docker run -d', raw),
        line('raw, same isolation: + proxy + forwarder', rawIso),
        line('start.ts, default egress (make start)', start),
        line('start.ts --egress none', none),
        line('  of which node + loading (--help)', help),
        line('start.ts via tsx (npx tsx scripts/start.ts)', viaTsx),
        line('  of which node + tsx + loading (--help)', helpTsx),
        `  ratio start.ts / raw: ${ratio.toFixed(2)} (goal <= ${GOAL}: ${ratio <= GOAL ? 'met' : 'not met'})`,
        `  ratio start.ts / raw with the same isolation: ${(median(start) / median(rawIso)).toFixed(2)} (goal <= ${GOAL}: ${median(start) / median(rawIso) <= GOAL ? 'met' : 'not met'})`,
        `  ratio via tsx / raw:  ${ratioTsx.toFixed(2)}`,
        `  ratio --egress none / raw: ${(median(none) / median(raw)).toFixed(2)}`,
        `  memory of each session's proxy: ${memory.proxy}; of its forwarder: ${memory.forwarder} (docker stats, ${memory.count} sessions)`,
        ...(gvisor
          ? [
              line('raw under runsc: git worktree add + docker run', rawRunsc),
              line('start.ts --runtime runsc, default egress', startRunsc),
              `  ratio start.ts --runtime runsc / start.ts (runc): ${(median(startRunsc) / median(start)).toFixed(2)}`,
              `  ratio raw runsc / raw runc: ${(median(rawRunsc) / median(raw)).toFixed(2)}`,
              `  ratio start.ts --runtime runsc / raw runsc: ${(median(startRunsc) / median(rawRunsc)).toFixed(2)}`,
              `  memory of an idle session container: runc ${memoryRunc}, runsc ${memoryRunsc} (docker stats)`,
            ]
          : ['  gVisor (runsc) is not registered with this engine: its figures are left out']),
        '',
      ].join('\n'),
    );
    return 0;
  } finally {
    await cleanupAll();
  }
}

await runMain(main);
