// make bench: a start through the MCP server (para_start from an SDK client over stdio, the server
// already running) against `para start` typed at a shell, alternating them, in one run on one image.
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { parseArgs, runMain } from '../scripts/lib/cli.ts';
import { UsageError } from '../scripts/lib/errors.ts';
import { PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { makeRepo } from '../test/support/repos.ts';
import { cleanupAll, RUN_ID, TEST_LABEL } from '../test/support/resources.ts';
import { benchImage } from './images.ts';
import { line, median, timed } from './measure.ts';

const USAGE = `Usage: node --import tsx bench/mcp.bench.ts [--rounds N] [--image IMAGE]

Times para_start called through para mcp (an MCP SDK client over stdio; the server started once,
as Claude Code keeps it) against node dist/para.mjs start NAME --container --detach, both with
--egress none, alternating, in a temporary repository. Without --image it builds a throwaway
authenticated image from a fake login. Everything it creates is removed at the end.`;

const PARA = path.join(PROJECT_ROOT, 'dist', 'para.mjs');

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['rounds', 'image'], boolean: ['help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const rounds = Number(args.rounds || 5);
  if (!Number.isInteger(rounds) || rounds < 1) throw new UsageError(`--rounds must be a positive integer, got ${args.rounds}`);
  if (!(await fs.pathExists(PARA))) throw new UsageError(`${PARA} is missing`, 'run: make build (make bench does it)');
  try {
    const image = await benchImage(args.image || undefined, `para-bench-mcp-${RUN_ID}:auth`);
    const repo = await makeRepo();
    const env = { ...(process.env as Record<string, string>), ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` };
    const cli = (name: string) =>
      execa(process.execPath, [PARA, 'start', name, '--container', '--detach', '--egress', 'none', '--image', image, '--json'], { cwd: repo.root, env });
    const client = new Client({ name: 'para-bench', version: '1.0.0' });
    await client.connect(new StdioClientTransport({ command: process.execPath, args: [PARA, 'mcp'], cwd: repo.root, env }));
    const viaMcp = async (name: string) => {
      const result = (await client.callTool({ name: 'para_start', arguments: { name, egress: 'none', image } })) as {
        isError?: boolean;
        content: Array<{ text: string }>;
      };
      if (result.isError) throw new Error(result.content[0]?.text);
    };
    process.stderr.write(`timing ${rounds} rounds in ${repo.root} on ${image}\n`);
    await cli('warm-cli');
    await viaMcp('warm-mcp');
    const direct: number[] = [];
    const mcp: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      const runCli = async () => direct.push(await timed(() => cli(`cli-${round}`)));
      const runMcp = async () => mcp.push(await timed(() => viaMcp(`mcp-${round}`)));
      for (const run of round % 2 ? [runMcp, runCli] : [runCli, runMcp]) await run();
    }
    await client.close();
    process.stdout.write(
      [
        `a start through para mcp against para start (${rounds} rounds, --egress none, image ${image}):`,
        line('para start NAME --container --detach', direct),
        line('para_start over MCP (server already running)', mcp),
        `  ratio MCP / para start: ${(median(mcp) / median(direct)).toFixed(2)}`,
        '',
      ].join('\n'),
    );
    return 0;
  } finally {
    await cleanupAll();
  }
}

await runMain(main);
