// Is the login real? make image VERIFY=online and doctor --online make one real request with the
// image's credentials through an egress proxy, against a fake Anthropic API of the test's own
// (a throwaway CA trusted through NODE_EXTRA_CA_CERTS) that accepts one key and rejects another.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { docker } from '../scripts/lib/engine/docker.ts';
import { imageExists } from './support/verbs.ts';
import { buildAuthImage, fakeHome, runScript, testClaudeImage, testEgressImage } from './support/images.ts';
import { certsFolder, httpsServer, netImage, testNetwork } from './support/internet.ts';
import { RUN_ID, tempDir, trackImage } from './support/resources.ts';

const GOOD = `sk-ant-api03-PARAFAKE${RUN_ID}accepted-key-0123456789`;
const BAD = `sk-ant-api03-PARAFAKE${RUN_ID}rejected-key-0123456789`;

/** A fake Messages API: a tiny streamed answer for GOOD, 401 for anything else; every request line and key logged. */
const API_HANDLER = `#!/bin/bash
read -r line
echo "$line" >> /tmp/requests.log
auth=""; length=0
while IFS= read -r header; do
  header="\${header%$'\\r'}"
  [ -z "$header" ] && break
  case "\${header,,}" in
    x-api-key:*|authorization:*) auth="\${header#*: }";;
    content-length:*) length="\${header#*: }";;
  esac
done
[ "$length" -gt 0 ] 2>/dev/null && head -c "$length" >/dev/null
echo "key=$auth" >> /tmp/requests.log
case "$line" in
  "POST /v1/messages"*) ;;
  *) printf 'HTTP/1.1 404 Not Found\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\n{}'; exit 0;;
esac
if [ "$auth" != "${GOOD}" ]; then
  body='{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}'
  printf 'HTTP/1.1 401 Unauthorized\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\nConnection: close\\r\\n\\r\\n%s' "\${#body}" "$body"
  exit 0
fi
printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\nConnection: close\\r\\n\\r\\n'
ev() { printf 'event: %s\\ndata: %s\\n\\n' "$1" "$2"; }
ev message_start '{"type":"message_start","message":{"id":"msg_para","type":"message","role":"assistant","model":"claude-haiku-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}}'
ev content_block_start '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'
ev content_block_delta '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"OK"}}'
ev content_block_stop '{"type":"content_block_stop","index":0}'
ev message_delta '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":1}}'
ev message_stop '{"type":"message_stop"}'
`;

interface Api {
  /** A network where api.anthropic.com is the fake API. */
  network: string;
  /** A network with nothing on it. */
  empty: string;
  ca: string;
  server: string;
}

let api: Api;

async function keyFile(value: string): Promise<string> {
  const file = path.join(await tempDir('para-test-key-'), 'key');
  await fs.writeFile(file, value, { mode: 0o600 });
  return file;
}

async function makeImage(tag: string, key: string, extra: string[]) {
  return buildAuthImage(tag, await fakeHome(), ['--api-key-file', await keyFile(key), '--json', ...extra], { env: env() });
}

function env(): Record<string, string | undefined> {
  return { NODE_EXTRA_CA_CERTS: api.ca, HTTPS_PROXY: undefined, https_proxy: undefined, HTTP_PROXY: undefined, http_proxy: undefined };
}

/** Nothing of an online check may remain: its containers and its proxy's volume. */
async function noCheckLeft(): Promise<void> {
  assert.is((await docker(['ps', '-a', '-q', '--filter', 'name=para-check-'])).stdout.trim(), '');
  assert.is((await docker(['volume', 'ls', '-q', '--filter', 'name=para-check-'])).stdout.trim(), '');
}

async function requests(): Promise<string> {
  return (await docker(['exec', api.server, 'sh', '-c', 'cat /tmp/requests.log 2>/dev/null || true'])).stdout;
}

const online = suite('the online check: accepted, rejected, unreachable');

online.before(async () => {
  await Promise.all([testClaudeImage(), testEgressImage(), netImage()]);
  const certs = await certsFolder(['api.anthropic.com'], { 'api.sh': API_HANDLER });
  const servers: string[] = [];
  const { network } = await testNetwork(servers);
  const { network: empty } = await testNetwork([]);
  const server = await httpsServer(network, 'api.anthropic.com', certs, 'api.sh');
  servers.push(server.container);
  api = { network, empty, ca: path.join(certs, 'ca.pem'), server: server.container };
});

online('make image VERIFY=online: an accepted key moves the tag; a rejected one does not, and says so', async () => {
  const good = trackImage(`para-online-good-${RUN_ID}:latest`);
  // Watched while it happens: the engine keeps only its last 256 events, which a busy engine (the other test files) overruns.
  const watching = execa(
    'docker',
    ['events', '--filter', 'type=container', '--filter', 'event=create', '--format', '{{.Actor.Attributes.name}} {{index .Actor.Attributes "dev.para.role"}}'],
    { reject: false, stdin: 'ignore' },
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  const accepted = await makeImage(good, GOOD, ['--verify', 'online', '--egress-network', api.network]);
  assert.is(accepted.exitCode, 0, accepted.stderr);
  assert.is(JSON.parse(accepted.stdout).online, 'accepted');
  assert.match(await requests(), 'POST /v1/messages');
  assert.match(await requests(), `key=${GOOD}`);
  // The way sessions take: through a credential broker of the check's own, the check's container holding a placeholder only.
  watching.kill();
  const made = { stdout: String((await watching).stdout) };
  assert.match(made.stdout, /^para-check-\S+-broker broker$/m, made.stdout);

  const bad = trackImage(`para-online-bad-${RUN_ID}:latest`);
  const rejected = await makeImage(bad, BAD, ['--verify', 'online', '--egress-network', api.network]);
  assert.is(rejected.exitCode, 1);
  assert.match(rejected.stderr, 'rejected the login', rejected.stderr);
  assert.match(rejected.stderr, 'was not changed');
  assert.not.ok(await imageExists(bad), 'a rejected login was tagged');
  assert.not.match(rejected.stderr, BAD, 'the key was printed');
  await noCheckLeft();
});

online('with no way to the API the check says unreachable, not rejected', async () => {
  const tag = trackImage(`para-online-unreachable-${RUN_ID}:latest`);
  const unreachable = await makeImage(tag, GOOD, ['--verify', 'online', '--egress-network', api.empty]);
  assert.is(unreachable.exitCode, 1);
  assert.match(unreachable.stderr, 'could not be reached');
  assert.not.ok(await imageExists(tag));
  await noCheckLeft();
});

online('doctor --online: ok for an accepted login, fail for a rejected one, warn when unreachable', async () => {
  const good = trackImage(`para-online-doctor-good-${RUN_ID}:latest`);
  const bad = trackImage(`para-online-doctor-bad-${RUN_ID}:latest`);
  for (const [tag, key] of [
    [good, GOOD],
    [bad, BAD],
  ]) {
    const built = await makeImage(tag, key, []);
    assert.is(built.exitCode, 0, built.stderr);
  }
  const doctor = async (image: string, network: string) => {
    const result = await runScript('doctor.ts', ['--json', '--image', image, '--online', '--egress-network', network], { env: env() });
    return JSON.parse(result.stdout).checks.find((c: { id: string }) => c.id === 'image-online') as { status: string; message: string; fix: string };
  };
  const accepted = await doctor(good, api.network);
  assert.is(accepted.status, 'ok', accepted.message);
  assert.match(accepted.message, 'accepted');
  const rejected = await doctor(bad, api.network);
  assert.is(rejected.status, 'fail', rejected.message);
  assert.match(rejected.message, 'rejected');
  const unreachable = await doctor(good, api.empty);
  assert.is(unreachable.status, 'warn', unreachable.message);
  assert.match(unreachable.message, 'could not be reached');
  // Without --online, no request is made.
  const before = (await requests()).split('\n').length;
  const plain = await runScript('doctor.ts', ['--json', '--image', good], { env: env() });
  assert.is(JSON.parse(plain.stdout).checks.find((c: { id: string }) => c.id === 'image-online').status, 'skip');
  assert.is((await requests()).split('\n').length, before);
  await noCheckLeft();
});

online('an expired subscription login is not checked online: the refresh would log the host out', async () => {
  const tag = trackImage(`para-online-expired-${RUN_ID}:latest`);
  const built = await buildAuthImage(tag, await fakeHome({ expiresAt: Date.now() - 3600_000 }));
  assert.is(built.exitCode, 0, built.stderr);
  const before = await requests();
  const result = await runScript('doctor.ts', ['--json', '--image', tag, '--online', '--egress-network', api.network], { env: env() });
  const check = JSON.parse(result.stdout).checks.find((c: { id: string }) => c.id === 'image-online');
  assert.is(check.status, 'fail');
  assert.match(check.message, 'would refresh it');
  assert.is(await requests(), before, 'a request was made');
});

online.run();
