// Forwarding a loopback port on this machine to a port inside a session container, over the
// engine's own exec stream: one `docker exec -i` per connection, running a relay in the container
// that connects to 127.0.0.1:PORT there. No network, no published port and nothing installed, so
// it works with --egress none, under every egress mode, under gVisor and on remote engines.
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { config } from '../config.ts';
import type { EngineTarget } from '../engine/target.ts';
import { targetEnv } from '../engine/target.ts';
import { ParaError, UsageError } from '../errors.ts';
import { childEnv } from '../exec.ts';
import { sessionPaths } from './paths.ts';
import { resolveSession, type Invocation } from './resolve.ts';
import { sessionContainer } from './resources.ts';
import { engineOf, sessionEngine } from './store.ts';

/**
 * The relay, as the agent's user (it reaches only what the agent could): bash's /dev/tcp to the
 * port, one reader and one writer; whichever side ends first ends both, so nothing lingers in the
 * container once either end closes.
 */
const RELAY = `exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 7
exec 4<&0
cat <&3 & cat <&4 >&3 &
wait -n
kill $(jobs -p) 2>/dev/null
exit 0`;

export function parsePort(text: string, what: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new UsageError(`${what} ${JSON.stringify(text)} is not a port (1-65535)`);
  return port;
}

export interface Forward {
  /** The local address, 127.0.0.1:N. */
  address: string;
  port: number;
  /** Connections open now. */
  open(): number;
  /** Stops listening and ends every connection (their relays end with them). */
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:`local` (0: any free port) and relays each connection to `port` in the container. */
export async function forwardPort(target: EngineTarget | null, container: string, port: number, local: number): Promise<Forward> {
  const env = childEnv(targetEnv(target ?? undefined));
  const children = new Set<ChildProcess>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const child = spawn('docker', ['exec', '-i', '--user', config.containerUser, container, 'bash', '-c', RELAY, 'para-port', String(port)], {
      env,
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    children.add(child);
    socket.on('data', (chunk) => {
      if (!child.stdin?.write(chunk)) socket.pause();
    });
    child.stdin?.on('drain', () => socket.resume());
    child.stdin?.on('error', () => socket.destroy());
    child.stdout?.pipe(socket);
    // A half-closed client may still be reading its answer: the relay ends once the socket is gone.
    socket.on('close', () => child.stdin?.end());
    socket.on('error', () => child.stdin?.end());
    child.on('close', () => {
      children.delete(child);
      socket.end();
    });
    child.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new ParaError(`127.0.0.1:${local} is in use on this machine`, {
              code: 'port-in-use',
              hint: 'choose another with --local PORT, or leave --local out for a free one',
            })
          : error,
      ),
    );
    server.listen(local, '127.0.0.1', () => resolve());
  });
  const bound = (server.address() as net.AddressInfo).port;
  return {
    address: `127.0.0.1:${bound}`,
    port: bound,
    open: () => children.size,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const child of children) child.stdin?.end();
        setTimeout(() => {
          for (const child of children) child.kill('SIGTERM');
        }, 2000).unref();
      });
    },
  };
}

/** The session's container, running, for a forward. */
export async function portTarget(cwd: string, name: string, invocation: Invocation): Promise<{ target: EngineTarget; container: string }> {
  const { repo, state } = await resolveSession(cwd, name, invocation);
  if (!state.container || state.status === 'finished') throw new ParaError(`session ${name} has no container to forward to`, { code: 'no-container' });
  const paths = sessionPaths(repo, name);
  const found = await sessionContainer(sessionEngine(state), repo, paths);
  if (found.presence !== 'running' || found.paused)
    throw new ParaError(`the container of session ${name} is not running`, {
      code: 'container-not-running',
      hint: `resume it: ${invocation('start')} ${name} --container --detach`,
    });
  return { target: engineOf(state), container: paths.container };
}
