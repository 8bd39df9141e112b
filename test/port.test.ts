// para port: a loopback port here forwarded to a dev server inside a session container with no
// network at all, over the engine's exec stream. Requests, a large transfer, many connections at
// once, a websocket-style upgrade, the same port of two sessions side by side, and nothing left
// behind once it is interrupted.
import { execa, type ResultPromise } from 'execa';
import fs from 'fs-extra';
import net from 'node:net';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { docker } from '../scripts/lib/engine/docker.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { runScript, scriptCommand, SESSION_IMAGE, sessionTestImage } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { onCleanup, RUN_ID, TEST_LABEL } from './support/resources.ts';
import { waitUntil } from './support/engine.ts';

const SERVER = fs.readFileSync(path.join(import.meta.dirname, 'support', 'devserver.pl'), 'utf8');

async function serving(repo: TestRepo, name: string): Promise<void> {
  const started = await runScript(
    'start.ts',
    [name, '--container', '--detach', '--egress', 'none', '--image', SESSION_IMAGE, '--', 'perl', '-e', SERVER, '3000'],
    {
      cwd: repo.root,
      env: repo.env,
    },
  );
  assert.is(started.exitCode, 0, started.stderr);
  await waitUntil('the dev server', async () => (await runScript('logs.ts', [name], { cwd: repo.root, env: repo.env })).stdout.includes('listening'), 30_000);
}

/** `para port NAME PORT ...` running; its first line of stdout is the address. */
async function forward(repo: TestRepo, args: string[]): Promise<{ address: string; child: ResultPromise }> {
  const [command, ...entry] = scriptCommand('port');
  const child = execa(command, [...entry, ...args], {
    cwd: repo.root,
    env: { ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
    reject: false,
    buffer: false,
  });
  onCleanup(async () => {
    child.kill('SIGKILL');
  });
  const address = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      if (text.includes('\n')) resolve(text.split('\n')[0]);
    });
    child.on('exit', (code) => reject(new Error(`para port exited (${code}) before printing an address`)));
  });
  return { address, child };
}

/** One HTTP GET over a raw socket: status line, headers and body length. */
function get(address: string, target: string): Promise<{ status: string; session: string; bytes: number }> {
  const [host, port] = address.split(':');
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), host, () => socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`));
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => {
      const all = Buffer.concat(chunks);
      const split = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, split).toString();
      resolve({ status: head.split('\r\n')[0], session: /X-Session: (\S+)/.exec(head)?.[1] ?? '', bytes: all.length - split - 4 });
    });
  });
}

const port = suite('para port');

port.before(sessionTestImage);

port('forwards requests, a large transfer and many connections to a server in a session with no network; two sessions side by side', async () => {
  const repo = await makeRepo();
  await Promise.all([serving(repo, 'web'), serving(repo, 'api')]);
  const web = await forward(repo, ['web', '3000']);
  const api = await forward(repo, ['api', '3000']);
  assert.match(web.address, /^127\.0\.0\.1:\d+$/);
  assert.is.not(web.address, api.address);
  const one = await get(web.address, '/12345');
  assert.is(one.status, 'HTTP/1.1 200 OK');
  assert.is(one.bytes, 12345);
  assert.is(one.session, 'web');
  assert.is((await get(api.address, '/7')).session, 'api');
  const big = await get(web.address, '/52428800');
  assert.is(big.bytes, 52428800);
  const many = await Promise.all(Array.from({ length: 24 }, (_, i) => get(web.address, `/${1000 + i}`)));
  assert.equal(
    many.map((r) => r.bytes),
    Array.from({ length: 24 }, (_, i) => 1000 + i),
  );
  // A websocket-style upgrade: one long-lived connection, both ways, several messages.
  const [host, p] = web.address.split(':');
  const socket = net.connect(Number(p), host);
  const received: string[] = [];
  socket.on('data', (c) => received.push(c.toString()));
  socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n');
  await waitUntil('the upgrade', async () => received.join('').includes('101 Switching Protocols'), 20_000);
  for (const message of ['ping-1', 'ping-2', 'ping-3']) {
    socket.write(message);
    await waitUntil(`the echo of ${message}`, async () => received.join('').includes(`echo:${message}`), 20_000);
  }
  socket.destroy();
  // Interrupted: it exits, its listener is gone, and no relay is left in the container.
  web.child.kill('SIGINT');
  assert.is((await web.child).exitCode, 0);
  const refused = await get(web.address, '/1').then(
    () => 'answered',
    (error: NodeJS.ErrnoException) => error.code,
  );
  assert.is(refused, 'ECONNREFUSED');
  const container = sessionPaths({ root: repo.root, commonDir: '' }, 'web').container;
  await waitUntil(
    'the relays to end',
    async () => !(await docker(['exec', container, 'sh', '-c', 'cat /proc/[0-9]*/cmdline 2>/dev/null | tr "\\0" " "'])).stdout.includes('para-port'),
    15_000,
  );
  api.child.kill('SIGINT');
  await api.child;
});

port('--local picks the port; a taken port, a bad port and a stopped session are refused with what to do', async () => {
  const repo = await makeRepo();
  await serving(repo, 'one');
  const blocker = net.createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => blocker.once('listening', resolve));
  const taken = (blocker.address() as net.AddressInfo).port;
  onCleanup(async () => blocker.close());
  const busy = await runScript('port.ts', ['one', '3000', '--local', String(taken)], { cwd: repo.root, env: repo.env });
  assert.is(busy.exitCode, 1);
  assert.match(busy.stderr, `127.0.0.1:${taken} is in use`);
  const bad = await runScript('port.ts', ['one', '70000'], { cwd: repo.root, env: repo.env });
  assert.is(bad.exitCode, 2);
  const free = taken + 1 < 65535 ? taken + 1 : taken - 1;
  const chosen = await forward(repo, ['one', '3000', '--local', String(free)]);
  assert.is(chosen.address, `127.0.0.1:${free}`);
  assert.is((await get(chosen.address, '/3')).bytes, 3);
  chosen.child.kill('SIGTERM');
  await chosen.child;
  await docker(['stop', '--time', '0', sessionPaths({ root: repo.root, commonDir: '' }, 'one').container]);
  const stopped = await runScript('port.ts', ['one', '3000'], { cwd: repo.root, env: repo.env });
  assert.is(stopped.exitCode, 1);
  assert.match(stopped.stderr, 'is not running');
});

port.run();
