// A fake internet of the tests' own containers: HTTPS servers with certificates from a throwaway
// CA, on a docker network of the test's own. Nothing here sends traffic anywhere else.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { docker } from '../../scripts/lib/engine/docker.ts';
import { BASE_IMAGE } from './images.ts';
import { onCleanup, RUN_ID, TEST_LABEL, tempDir, trackImage, uniqueName } from './resources.ts';

/**
 * Servers of the fake internet: socat with TLS, dnsmasq, tinyproxy (bash and sh come with the base).
 * A tag per test process: each removes its own at its end, never one another file still uses (the
 * build cache makes the second process's build a tag only).
 */
export const NET_IMAGE = trackImage(`para-egress-net-test-${RUN_ID}-${process.pid}:latest`);

export interface Server {
  container: string;
  ip: string;
}

export async function build(tag: string, dockerfile: string): Promise<void> {
  const result = await execa('docker', ['build', '-q', '--network', 'host', '-t', tag, '-'], {
    input: dockerfile,
    reject: false,
    env: { DOCKER_BUILDKIT: '0' },
  });
  if (result.exitCode !== 0) throw new Error(`building ${tag} failed:\n${result.stderr}`);
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await execa('openssl', args, { cwd });
}

/** A throwaway CA and one server certificate per host name. */
export async function certificates(dir: string, hosts: string[]): Promise<void> {
  await openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=para test CA'], dir);
  for (const host of hosts) {
    await openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${host}.key`, '-out', `${host}.csr`, '-subj', `/CN=${host}`], dir);
    await fs.writeFile(path.join(dir, `${host}.ext`), `subjectAltName=DNS:${host}\n`);
    await openssl(
      [
        'x509',
        '-req',
        '-in',
        `${host}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${host}.crt`,
        '-days',
        '2',
        '-extfile',
        `${host}.ext`,
      ],
      dir,
    );
  }
  await fs.chmod(dir, 0o755);
  for (const file of await fs.readdir(dir)) await fs.chmod(path.join(dir, file), 0o644);
}

async function ipOf(container: string, network: string): Promise<string> {
  const info = await docker(['inspect', '--format', `{{(index .NetworkSettings.Networks "${network}").IPAddress}}`, container]);
  return info.stdout.trim();
}

export async function runServer(network: string, name: string, args: string[], mounts: string[] = []): Promise<Server> {
  const container = uniqueName(`para-egress-${name}`);
  await docker(['run', '-d', '--name', container, '--label', `${TEST_LABEL}=${RUN_ID}`, '--network', network, ...mounts, NET_IMAGE, ...args]);
  return { container, ip: await ipOf(container, network) };
}

/** An HTTPS server that logs each request line and answers 200 (certs/handler.sh, written by setUpInternet). */
export function httpsServer(network: string, host: string, certs: string, handler = 'handler.sh'): Promise<Server> {
  return runServer(
    network,
    host.split('.')[0],
    ['socat', `OPENSSL-LISTEN:443,fork,reuseaddr,cert=/certs/${host}.crt,key=/certs/${host}.key,verify=0`, `EXEC:/certs/${handler}`],
    // The alias is for the corporate proxy, which resolves through Docker's DNS; the session's proxy asks dnsmasq.
    ['--mount', `type=bind,source=${certs},target=/certs,readonly`, '--network-alias', host],
  );
}

/** The plain handler: logs the request line, answers 200 with {}. */
export const HANDLER = [
  '#!/bin/sh',
  'read -r line',
  'echo "$line" >> /tmp/requests.log',
  "printf 'HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}'",
  '',
].join('\n');

/** The servers' image, built once per test process from the base image's package sources. */
export function netImage(): Promise<void> {
  netImage_ ??= build(
    NET_IMAGE,
    `FROM ${BASE_IMAGE}\nRUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends socat openssl dnsmasq tinyproxy >/dev/null && rm -rf /var/lib/apt/lists/*\n`,
  );
  return netImage_;
}
let netImage_: Promise<void> | undefined;

/** A network of the test's own, removed (with the given servers) at the end. */
export async function testNetwork(servers: string[]): Promise<{ network: string; gateway: string }> {
  const network = uniqueName('para-egress-net');
  await docker(['network', 'create', '--label', `${TEST_LABEL}=${RUN_ID}`, network]);
  onCleanup(async () => {
    if (servers.length) await docker(['rm', '-f', ...servers], { allowFailure: true });
    // The run's containers still on it (a credential broker serves a network for as long as it exists).
    const attached = (await docker(['ps', '-aq', '--filter', `network=${network}`, '--filter', `label=${TEST_LABEL}=${RUN_ID}`], { allowFailure: true })).stdout
      .split('\n')
      .filter(Boolean);
    if (attached.length) await docker(['rm', '-f', ...attached], { allowFailure: true });
    await docker(['network', 'rm', network], { allowFailure: true });
  });
  const gateway = (await docker(['network', 'inspect', '--format', '{{(index .IPAM.Config 0).Gateway}}', network])).stdout.trim();
  return { network, gateway };
}

/** A folder with the throwaway CA, certificates for `hosts` and the handlers (executable). */
export async function certsFolder(hosts: string[], handlers: Record<string, string>): Promise<string> {
  const certs = await tempDir('para-test-certs-');
  await certificates(certs, hosts);
  for (const [name, text] of Object.entries(handlers)) {
    await fs.writeFile(path.join(certs, name), text);
    await fs.chmod(path.join(certs, name), 0o755);
  }
  return certs;
}
