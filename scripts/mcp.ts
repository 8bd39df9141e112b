// para's MCP server over stdio (para mcp), and adding it to a repository's .mcp.json (para mcp install).
import fs from 'fs-extra';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertSupportedPlatform, invocation, log, parseArgs, printJson, runMain } from './lib/cli.ts';
import { ParaError, UsageError } from './lib/errors.ts';
import { findRepo } from './lib/git.ts';
import { serve, type ParaCommand } from './lib/mcp/server.ts';

const USAGE = `Usage: ${invocation('mcp')} [--repo PATH]
       ${invocation('mcp')} install [--print] [--json]

Serves para's session verbs as MCP tools over stdio, for an orchestrating Claude: para_start
(always in the background), para_list, para_logs, para_diff, para_log, para_sync, para_finish and
para_cancel, and para_port (forwards that live as long as the server). The tools work on the repository the server runs in (or --repo).

install   adds the server as "para" to this repository's .mcp.json, leaving other entries alone
          (--print: print the \`claude mcp add\` line instead of writing anything)`;

/** The para entry beside this script (scripts/para.ts under tsx, dist/para.mjs in a bundle), run by this node. */
function paraCommand(): ParaCommand {
  const here = fileURLToPath(import.meta.url);
  const entry = path.join(path.dirname(here), `para${path.extname(here)}`);
  return { command: process.execPath, prefix: [...loaderFlags(), entry] };
}

/** This node's loader flags (tsx's --import) with bare names resolved here: the verbs run in the repository, where they would not resolve. */
function loaderFlags(): string[] {
  const flags = ['--import', '--require', '--loader'];
  const resolve = (value: string) => (/^[@A-Za-z]/.test(value) && !value.startsWith('file:') ? import.meta.resolve(value) : value);
  return process.execArgv.map((arg, i, all) => {
    const joined = flags.find((flag) => arg.startsWith(`${flag}=`));
    if (joined) return `${joined}=${resolve(arg.slice(joined.length + 1))}`;
    return flags.includes(all[i - 1] ?? '') ? resolve(arg) : arg;
  });
}

/**
 * How Claude Code is to start the server: `para mcp` when the para on PATH is this very program,
 * else this checkout's bundle (dist/para.mjs, when built) or entry, by absolute path.
 */
async function serverCommand(): Promise<{ command: string; args: string[] }> {
  const { prefix } = paraCommand();
  const entry = prefix[prefix.length - 1];
  const real = (file: string) => fs.realpath(file).catch(() => '');
  for (const dir of (process.env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const found = await real(path.join(dir, 'para'));
    if (found && found === (await real(entry))) return { command: 'para', args: ['mcp'] };
  }
  const bundle = path.join(path.dirname(path.dirname(entry)), 'dist', 'para.mjs');
  if (entry.endsWith('.ts') && (await fs.pathExists(bundle))) return { command: 'node', args: [bundle, 'mcp'] };
  return { command: 'node', args: [...prefix, 'mcp'] };
}

async function install(print: boolean, json: boolean): Promise<number> {
  const repo = await findRepo(process.cwd());
  const { command, args } = await serverCommand();
  if (print) {
    const line = ['claude', 'mcp', 'add', '--scope', 'project', 'para', '--', command, ...args].join(' ');
    if (json) printJson({ ok: true, command: line });
    else process.stdout.write(`${line}\n`);
    return 0;
  }
  const file = path.join(repo.root, '.mcp.json');
  let config: { mcpServers?: Record<string, unknown> } & Record<string, unknown> = {};
  const stat = await fs.lstat(file).catch(() => undefined);
  if (stat && !stat.isFile()) throw new ParaError(`${file} is not a regular file; para leaves it alone`, { code: 'mcp-config-invalid' });
  if (stat) {
    try {
      config = JSON.parse(await fs.readFile(file, 'utf8'));
    } catch (error) {
      throw new ParaError(`${file} is not valid JSON (${(error as Error).message}); para leaves it alone`, {
        code: 'mcp-config-invalid',
        hint: `fix it, or add the server by hand: ${invocation('mcp')} install --print`,
      });
    }
    if (!config || typeof config !== 'object' || Array.isArray(config)) throw new ParaError(`${file} does not hold a JSON object; para leaves it alone`);
  }
  const servers = config.mcpServers && typeof config.mcpServers === 'object' ? { ...config.mcpServers } : {};
  const before = JSON.stringify(servers.para);
  servers.para = { type: 'stdio', command, args };
  const changed = before !== JSON.stringify(servers.para);
  if (changed) {
    const text = `${JSON.stringify({ ...config, mcpServers: servers }, null, 2)}\n`;
    const temp = `${file}.para-${process.pid}`;
    await fs.writeFile(temp, text, { flag: 'wx' });
    await fs.rename(temp, file);
  }
  if (json) printJson({ ok: true, file, changed, server: servers.para });
  else log(changed ? `added the para MCP server to ${file}; Claude Code asks once before it starts it` : `${file} already has the para MCP server`);
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['repo'], boolean: ['print', 'json', 'verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  const [verb, ...extra] = args._.map(String);
  if (verb === 'install') {
    if (extra.length || args.repo) throw new UsageError('install takes no argument but --print', `${invocation('mcp')} install`);
    return install(Boolean(args.print), Boolean(args.json));
  }
  if (verb !== undefined)
    throw new UsageError(`unknown mcp command ${JSON.stringify(verb)}`, `${invocation('mcp')} [--repo PATH], or ${invocation('mcp')} install`);
  const repo = await findRepo(args.repo ? path.resolve(String(args.repo)) : process.cwd());
  await serve({ repo: repo.root, para: paraCommand(), version: '0.1.0' });
  // The transport keeps the process alive until the client closes stdin.
  return await new Promise<number>((resolve) => process.stdin.on('close', () => resolve(0)));
}

await runMain(main);
