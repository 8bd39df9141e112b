// The Docker host's own addresses, which the proxy must never connect to whatever a name
// resolves to: this machine's (for a local engine) and every docker network's gateway.
import { networkInterfaces } from 'node:os';
import fs from 'fs-extra';
import { config } from '../config.ts';
import type { Engine } from '../engine/engine.ts';
import { ParaError } from '../errors.ts';
import { impliedGateway } from './rules.ts';

/**
 * Every address of this machine, the link-down ones too (a Docker bridge with no container is
 * down, yet its address is the host's): Node's list of the interfaces that are up, and on Linux
 * the kernel's own tables of local IPv4 (/proc/net/fib_trie) and IPv6 (/proc/net/if_inet6) addresses.
 */
export async function localAddresses(): Promise<string[]> {
  const found = new Set<string>();
  for (const entry of Object.values(networkInterfaces()).flat()) if (entry) found.add(entry.address.replace(/%.*$/, ''));
  const trie = await fs.readFile('/proc/net/fib_trie', 'utf8').catch(() => '');
  let last = '';
  for (const line of trie.split('\n')) {
    const leaf = /\|--\s+(\d+\.\d+\.\d+\.\d+)/.exec(line);
    if (leaf) last = leaf[1];
    else if (/\/32 host LOCAL/.test(line) && last) found.add(last);
  }
  const inet6 = await fs.readFile('/proc/net/if_inet6', 'utf8').catch(() => '');
  for (const line of inet6.split('\n')) {
    const hex = line.trim().split(/\s+/)[0];
    if (hex && /^[0-9a-f]{32}$/.test(hex))
      found.add(
        hex
          .match(/.{4}/g)!
          .map((group) => group.replace(/^0{1,3}/, ''))
          .join(':'),
      );
  }
  return [...found];
}

/**
 * The Docker host's addresses as its containers see them: the gateway of every docker network
 * (named, or implied by the subnet), and, for a local engine, every address of this machine.
 * Checks first that the proxy's own network exists.
 */
export async function dockerHostAddresses(engine: Engine, network: string | null): Promise<string[]> {
  const listed = await engine.docker(['network', 'ls', '--no-trunc', '--format', '{{.ID}} {{.Name}}'], { timeoutMs: config.timeouts.dockerQuickMs });
  const networks = listed.stdout
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' '));
  if (network && network !== 'host' && !networks.some(([id, name]) => name === network || id === network || id.startsWith(network))) {
    throw new ParaError(`the docker network ${network} does not exist`, {
      code: 'egress-network-missing',
      hint: `create it (docker network create ${network}) or choose another --egress-network`,
    });
  }
  // This machine's own addresses are the engine's only when the engine runs here.
  const addresses = new Set<string>(engine.remote ? [] : await localAddresses());
  if (networks.length) {
    const inspected = await engine.docker(['network', 'inspect', '--format', '{{json .IPAM.Config}}', ...networks.map(([id]) => id)], {
      allowFailure: true,
      timeoutMs: config.timeouts.dockerQuickMs,
    });
    for (const line of inspected.stdout.split('\n').filter((l) => l.startsWith('['))) {
      try {
        for (const entry of JSON.parse(line) as Array<{ Gateway?: string; Subnet?: string }>) {
          const gateway = entry.Gateway || (entry.Subnet ? impliedGateway(entry.Subnet) : undefined);
          if (gateway) addresses.add(gateway);
        }
      } catch {
        // a network docker cannot describe has no gateway to add
      }
    }
  }
  return [...addresses];
}
