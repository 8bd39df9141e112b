// Forward a loopback port on this machine to a port inside a session's container, until interrupted.
import { assertSupportedPlatform, invocation, log, parseArgs, runMain } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { forwardPort, parsePort, portTarget } from './lib/session/port.ts';

const USAGE = `Usage: ${invocation('port')} NAME PORT [--local LOCALPORT]

Forwards 127.0.0.1:LOCALPORT on this machine (default: a free port) to PORT inside session
NAME's container (the agent's dev server on 127.0.0.1:PORT there), over the engine's own exec
stream: it works with --egress none, under every egress mode, under gVisor and on another
machine's engine. Prints the local address (127.0.0.1:N) as the first line of standard output,
then forwards until interrupted (Ctrl-C); nothing is left behind, here or in the container.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['local'], boolean: ['verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 2) throw new UsageError('give a session NAME and a PORT', `${invocation('port')} NAME 3000`);
  const [name, portText] = args._.map(String);
  const port = parsePort(portText, 'PORT');
  const local = args.local === undefined ? 0 : parsePort(String(args.local), '--local');
  const { target, container } = await portTarget(process.cwd(), name, invocation);
  const forward = await forwardPort(target, container, port, local);
  process.stdout.write(`${forward.address}\n`);
  log(`forwarding ${forward.address} to port ${port} of session ${name}; Ctrl-C stops`);
  await new Promise<void>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(signal, () => resolve());
  });
  await forward.close();
  return 0;
}

await runMain(main);
