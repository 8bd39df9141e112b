// make bench: what the credential broker adds. In one fake internet of the bench's own (a fake
// api.anthropic.com on a network of its own), one session started with the broker and one with
// --credentials image (the login baked in, its requests through a tunnel of the session's proxy):
// claude -p's whole run in each, measured in turn in the same run, and the broker's memory.
import path from 'node:path';
import { parseArgs, runMain } from '../scripts/lib/cli.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { labels } from '../scripts/lib/config.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { buildAuthImage, fakeHome, runScript, testEgressImage } from '../test/support/images.ts';
import { certsFolder, httpsServer, netImage, testNetwork } from '../test/support/internet.ts';
import { makeRepo } from '../test/support/repos.ts';
import { cleanupAll, RUN_ID, TEST_LABEL } from '../test/support/resources.ts';
import { line, mebibytes, median, timed } from './measure.ts';

const USAGE = `Usage: node --import tsx bench/broker.bench.ts [--rounds N]

Starts two sessions against a fake api.anthropic.com of its own (one through the credential
broker, one with --credentials image) and times claude -p in each (median of --rounds, default 5),
then the broker's memory. Everything it creates is removed at the end.`;

/** The fake API's answer: one streamed text, sized (socat closes TLS without a close_notify). */
const API = `#!/usr/bin/perl
use strict; $| = 1;
my $line = <STDIN>; my $len = 0;
while (my $x = <STDIN>) { $x =~ s/\\r?\\n$//; last if $x eq ''; $len = $1 if $x =~ /^content-length:\\s*(\\d+)/i; }
my $body = ''; read(STDIN, $body, $len) if $len;
my $out = '';
sub ev { $out .= "event: $_[0]\\ndata: $_[1]\\n\\n"; }
ev('message_start', '{"type":"message_start","message":{"id":"m","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}');
ev('content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}');
ev('content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}}');
ev('content_block_stop', '{"type":"content_block_stop","index":0}');
ev('message_delta', '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":2}}');
ev('message_stop', '{"type":"message_stop"}');
print "HTTP/1.1 200 OK\\r\\nContent-Type: text/event-stream\\r\\nContent-Length: " . length($out) . "\\r\\nConnection: close\\r\\n\\r\\n$out";
`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['rounds'], boolean: ['help'] });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const rounds = Number(args.rounds ?? 5);
  try {
    await Promise.all([netImage(), testEgressImage()]);
    const certs = await certsFolder(['api.anthropic.com'], { 'api.pl': API });
    const servers: string[] = [];
    const { network } = await testNetwork(servers);
    servers.push((await httpsServer(network, 'api.anthropic.com', certs, 'api.pl')).container);
    const login = `para-bench-login-${RUN_ID}:latest`;
    const built = await buildAuthImage(login, await fakeHome());
    if (built.exitCode !== 0) throw new Error(built.stderr);
    const repo = await makeRepo();
    const env = { ...repo.env, NODE_EXTRA_CA_CERTS: path.join(certs, 'ca.pem') };
    const start = async (name: string, mode: string) => {
      const r = await runScript(
        'start.ts',
        [name, '--container', '--detach', '--image', login, '--egress-network', network, '--credentials', mode, '--no-user-config', '--', 'sleep', '900'],
        { cwd: repo.root, env },
      );
      if (r.exitCode !== 0) throw new Error(r.stderr);
      return sessionPaths({ root: repo.root, commonDir: '' }, name).container;
    };
    const brokered = await start('bench-broker', 'broker');
    const baked = await start('bench-image', 'image');
    const ask = (container: string) => docker(['exec', '-u', 'para', container, 'claude', '-p', 'say ok'], { timeoutMs: 120_000 });
    // One warm-up each: the first request pays for the broker's and the proxy's first connection.
    await ask(brokered);
    await ask(baked);
    const viaBroker: number[] = [];
    const viaTunnel: number[] = [];
    for (let i = 0; i < rounds; i += 1) {
      viaBroker.push(await timed(() => ask(brokered)));
      viaTunnel.push(await timed(() => ask(baked)));
    }
    const brokerName = (
      await docker([
        'ps',
        '-q',
        '--filter',
        `label=${labels.role}=broker`,
        '--filter',
        `label=${labels.brokerImage}=${login}`,
        '--filter',
        `label=${TEST_LABEL}=${RUN_ID}`,
      ])
    ).stdout.trim();
    const memory = mebibytes((await docker(['stats', '--no-stream', '--format', '{{.MemUsage}}', brokerName])).stdout);
    const added = median(viaBroker) - median(viaTunnel);
    process.stdout.write(
      [
        `credential broker, ${rounds} rounds (a fake API on a network of the bench's own):`,
        line('claude -p through the broker', viaBroker),
        line('claude -p through a tunnel (credentials image)', viaTunnel),
        `  added per request: ${(added / 1000).toFixed(3)} s (ratio ${(median(viaBroker) / median(viaTunnel)).toFixed(2)})`,
        `  broker memory: ${memory.toFixed(1)} MiB`,
        '',
      ].join('\n'),
    );
    return 0;
  } finally {
    await cleanupAll();
  }
}

await runMain(main);
