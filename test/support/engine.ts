// A second Docker engine of a test's own: its own socket, data root, exec root and pid file, so
// the shared engine is never touched. Starting dockerd needs root.
import { execa, type ResultPromise } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { onCleanup } from './resources.ts';

export async function waitUntil(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(100);
  }
}

export interface PrivateEngine {
  dir: string;
  /** unix://… of its socket, for DOCKER_HOST. */
  host: string;
  /** docker on that engine only. */
  docker(args: string[], input?: string): Promise<{ exitCode: number; stdout: string; stderr: string }>;
  start(): Promise<void>;
  /** Stops it (SIGKILL: as a crash would, then clears what a killed dockerd leaves, as an operator would). */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Creates (and starts) a private engine, removed with everything under it when the test process
 * ends. Its configuration is its own file (never the machine's /etc/docker/daemon.json); it offers
 * gVisor's runsc, registered as .ci/run registers it, when `runsc` is on PATH.
 */
export async function privateEngine(): Promise<PrivateEngine> {
  // Short paths: containerd's sockets live under the exec root, and unix socket paths are short.
  const dir = await fs.mkdtemp('/tmp/pe-');
  const socket = path.join(dir, 'docker.sock');
  const runsc = (await execa('sh', ['-c', 'command -v runsc'], { reject: false })).stdout.trim();
  const config = path.join(dir, 'daemon.json');
  await fs.writeJson(config, runsc ? { runtimes: { runsc: { path: runsc, runtimeArgs: ['--network=host'] } } } : {});
  const args = [
    '--host',
    `unix://${socket}`,
    '--config-file',
    config,
    '--data-root',
    path.join(dir, 'data'),
    '--exec-root',
    path.join(dir, 'x'),
    '--pidfile',
    path.join(dir, 'pid'),
  ];
  args.push('--bridge=none', '--iptables=false', '--ip-forward=false', '--ip-masq=false');
  const log = path.join(dir, 'dockerd.log');
  let daemon: ResultPromise | undefined;
  const engine: PrivateEngine = {
    dir,
    host: `unix://${socket}`,
    async docker(dockerArgs, input) {
      const result = await execa('docker', dockerArgs, { env: { DOCKER_HOST: `unix://${socket}`, DOCKER_CONTEXT: undefined }, reject: false, input });
      return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
    },
    async start() {
      daemon = execa('dockerd', args, { reject: false, stdin: 'ignore', stdout: { file: log, append: true }, stderr: { file: log, append: true } });
      await waitUntil('the private dockerd to answer', async () => (await engine.docker(['info'])).exitCode === 0).catch(async (error: unknown) => {
        throw new Error(`${String(error)}\n${(await fs.readFile(log, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n')}`);
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (!daemon) return;
      daemon.kill(signal);
      await daemon;
      daemon = undefined;
      if (signal === 'SIGKILL') {
        await execa('pkill', ['-KILL', '-f', dir], { reject: false });
        await waitUntil("the killed engine's processes to end", async () => (await execa('pgrep', ['-f', dir], { reject: false })).exitCode !== 0, 30_000);
        for (const file of ['pid', 'x/containerd/containerd.pid']) await fs.rm(path.join(dir, file), { force: true });
      }
    },
  };
  onCleanup(async () => {
    await engine.stop();
    await execa('sh', ['-c', 'grep -o " $1[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l', 'sh', dir], { reject: false });
    await fs.rm(dir, { recursive: true, force: true });
  });
  await engine.start();
  return engine;
}
