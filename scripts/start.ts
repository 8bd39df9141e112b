// Start (or resume) a session: a branch and worktree folder, and with --container its own container.
import { execa } from 'execa';
import fs from 'fs-extra';
import { assertSupportedPlatform, invocation, log, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { config, type CredentialsMode, isCpuCount, isMemorySize } from './lib/config.ts';
import { UsageError } from './lib/errors.ts';
import { looksLikePrompt } from './lib/session/names.ts';
import { attach } from './lib/session/container.ts';
import { engineOf, sessionEngine, workTreeOf } from './lib/session/store.ts';
import { forwardPort, parsePort } from './lib/session/port.ts';
import { chosenMcpServers, readUserConfig, type UserConfig } from './lib/session/user-config.ts';
import os from 'node:os';
import { currentDockerContext, describeEngine, resolveEngine } from './lib/engine/target.ts';
import { checkAllow, EGRESS_MODES, REPO_ALLOW_FILE, type EgressMode } from './lib/egress/rules.ts';
import { startSession } from './lib/session/start.ts';
import type { StartResult } from './lib/session/request.ts';

function usage(): string {
  return `Usage:
  ${invocation('start')} NAME [--container]             a named session
  ${invocation('start')} "PROMPT TEXT" --container      a prompt; the name is derived from it
  ${invocation('start')} [NAME] -p TEXT | --prompt-file FILE
  ${invocation('start')} NAME --container [--detach] -- CMD [ARGS...]

Creates branch para/NAME and the folder .para/worktrees/NAME. With --container the agent works
there in its own container, with a git repository of its own; its commits reach para/NAME when
para syncs (list, logs, sync, finish, cancel, or a start that resumes).
Starting an existing session resumes it (claude --continue).

Options:
  --container          run the session in a container from --image
  --image IMAGE        default: ${config.authenticatedImage} (on resume: switch the session to IMAGE, keeping its work)
  --detach             return once the container runs; a prompt or -- CMD runs in the background
                       (read its output with logs NAME)
  --port PORT          while you are attached, forward a free local port to PORT in the container
                       (printed); repeatable. Detached: port NAME PORT
  --no-user-config     do not carry your Claude setup in (CLAUDE.md, commands/, agents/, skills/,
                       output-styles/ and safe settings.json keys of ~/.claude; never secrets)
  --mcp-server NAME    also carry your MCP server NAME (from ~/.claude.json); repeatable. One
                       with env values or headers is refused: the agent could read them
  --credentials MODE   how the session's claude gets your login: broker (default; PARA_CREDENTIALS):
                       the container holds none, the engine's credential broker sets it on each
                       API request; image: baked into the session's image (any process in the
                       session can read it). Egress open or none always uses image
  --ask                attached claude asks before it runs a tool (default: no permission prompts,
                       --dangerously-skip-permissions, as the container is the boundary); a session
                       keeps the mode it started with
  --egress MODE        how the agent reaches the outside: allowlist (default: only the allowed
                       hosts, through a proxy it cannot bypass), open (any address: loud), none
  --allow HOST         admit HOST (or *.domain) too; repeatable. Per repository: ${REPO_ALLOW_FILE}
  --egress-network NET docker network the proxy (or, when open, the session) reaches out through
                       (default: docker's own; host allowed for the proxy only)
  --network none       the same as --egress none (--network NET: the same as --egress-network NET)
  --context NAME       start the session on that docker context's engine (default: DOCKER_CONTEXT,
                       DOCKER_HOST, or the current context); later commands find it there by themselves
  --engine MODE        local (the engine sees this machine's files: the folder is bind-mounted) or
                       remote (no bind mount: history and work move as git bundles). Default: local
                       for the default engine and its socket, remote for any other context or host
  --runtime NAME       the OCI runtime of the session container, e.g. runsc (gVisor: a kernel of the
                       sandbox's own); default PARA_RUNTIME, else the engine's. A session keeps it
  --memory SIZE        memory limit (default ${config.limits.memory}; PARA_MEMORY)
  --cpus N             CPU limit (default ${config.limits.cpus}; PARA_CPUS)
  --pids-limit N       process limit (default ${config.limits.pidsLimit}; PARA_PIDS_LIMIT)
  -p, --prompt TEXT    the prompt for claude
  --prompt-file FILE   read the prompt from FILE
  --json               print one JSON object on stdout
  --verbose            show stack traces on errors
  -h, --help           show this help

Names: 1-50 characters, a letter or digit first, then letters, digits, "_" or "-".`;
}

function summary(result: StartResult): Record<string, unknown> {
  const s = result.session;
  return {
    ok: true,
    name: s.name,
    branch: s.branch,
    worktree: s.worktree,
    container: s.container,
    image: s.image,
    network: s.network,
    egress: s.egress ?? null,
    engine: s.engine ?? null,
    runtime: s.runtime ?? null,
    permissions: s.permissions ?? 'bypass',
    limits: s.limits,
    status: s.status,
    prompt: s.prompt,
    resumed: result.resumed,
    job: s.job,
  };
}

/** The user's Claude setup to carry (minimist reads --no-user-config as user-config = false), and the MCP servers chosen by name. */
async function userConfig(args: Record<string, unknown>): Promise<UserConfig> {
  const mcpServers = await chosenMcpServers(os.homedir(), process.env, args['mcp-server'] as string[]);
  if (args['user-config'] === false) return { entries: [], settings: {}, mcpServers, skipped: [] };
  return { ...(await readUserConfig(os.homedir(), process.env)), mcpServers };
}

function limitsFrom(args: Record<string, unknown>): { memory: string; cpus: string; pidsLimit: number } {
  const memory = String(args.memory || config.limits.memory);
  const cpus = String(args.cpus || config.limits.cpus);
  const pids = args['pids-limit'] ? Number(args['pids-limit']) : config.limits.pidsLimit;
  if (!isMemorySize(memory)) throw new UsageError(`--memory ${JSON.stringify(memory)} is not a size`, 'give a size such as 4g or 512m');
  if (!isCpuCount(cpus)) throw new UsageError(`--cpus ${JSON.stringify(cpus)} is not a positive number`, 'give a number such as 2 or 0.5');
  if (!Number.isInteger(pids) || pids <= 0) throw new UsageError(`--pids-limit ${JSON.stringify(args['pids-limit'])} is not a positive integer`);
  return { memory, cpus, pidsLimit: pids };
}

/** --egress, --allow, --egress-network, and the older --network (none, or the network to reach out through). */
function egressFrom(args: Record<string, unknown>): { mode: EgressMode; explicit: boolean; network: string | undefined; allow: string[] } {
  const given = args.egress ? String(args.egress) : undefined;
  if (given !== undefined && !EGRESS_MODES.includes(given as EgressMode))
    throw new UsageError(`--egress ${JSON.stringify(given)} is not a mode`, `use one of: ${EGRESS_MODES.join(', ')}`);
  const network = args.network ? String(args.network) : undefined;
  const egressNetwork = args['egress-network'] ? String(args['egress-network']) : undefined;
  if (network && egressNetwork) throw new UsageError('give either --network or --egress-network, not both');
  let mode = (given as EgressMode | undefined) ?? 'allowlist';
  if (network === 'none') {
    if (given && given !== 'none') throw new UsageError(`--network none contradicts --egress ${given}`, 'drop one of them');
    mode = 'none';
  }
  // --network keeps its older meaning for the host's network: the session's own, which is refused.
  if (network === 'host')
    throw new UsageError("--network host would give the agent the host's network", 'use --egress-network host to put only the proxy there');
  if (egressNetwork === 'none')
    throw new UsageError('--egress-network none would leave the proxy no way out', 'use --egress none for a session without network');
  const allow = checkAllow(args.allow as string[]);
  if (allow.length && mode !== 'allowlist') throw new UsageError(`--allow has no effect with --egress ${mode}`, 'drop --allow, or use --egress allowlist');
  return { mode, explicit: Boolean(given) || network === 'none', network: network === 'none' ? undefined : (network ?? egressNetwork), allow };
}

function credentialsFrom(given: string | undefined): CredentialsMode {
  if (!given) return config.credentialsMode;
  if (given !== 'broker' && given !== 'image') throw new UsageError(`--credentials ${JSON.stringify(given)} is not a mode`, 'use broker or image');
  return given;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    string: [
      'prompt',
      'prompt-file',
      'image',
      'network',
      'egress',
      'egress-network',
      'memory',
      'cpus',
      'pids-limit',
      'context',
      'engine',
      'runtime',
      'credentials',
    ],
    repeatable: ['allow', 'port', 'mcp-server'],
    boolean: ['container', 'detach', 'ask', 'no-user-config', 'json', 'verbose', 'help'],
    alias: { p: 'prompt', h: 'help' },
    doubleDash: true,
  });
  if (args.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  assertSupportedPlatform();
  const positional = args._.map(String);
  if (positional.length > 1)
    throw new UsageError(
      `expected at most one NAME or "PROMPT", got ${positional.length} arguments`,
      `quote a prompt: ${invocation('start')} "implement feature X" --container`,
    );
  let name: string | undefined;
  let prompt: string | undefined = args.prompt || undefined;
  if (args['prompt-file']) {
    if (prompt) throw new UsageError('give either --prompt or --prompt-file, not both');
    try {
      prompt = (await fs.readFile(args['prompt-file'], 'utf8')).trim();
    } catch {
      throw new UsageError(`cannot read the prompt file ${args['prompt-file']}`);
    }
  }
  if (positional.length === 1) {
    if (looksLikePrompt(positional[0])) {
      if (prompt)
        throw new UsageError('a prompt was given twice (as an argument and with --prompt)', 'pass the name as the argument and the prompt with --prompt');
      prompt = positional[0].trim();
    } else {
      name = positional[0];
    }
  }
  if (prompt !== undefined && prompt.length === 0) throw new UsageError('the prompt is empty');
  if (name === undefined && prompt === undefined) throw new UsageError('give a session NAME or a "PROMPT"', 'see --help');
  const command = (args['--'] ?? []).map(String);
  const json = Boolean(args.json);
  const tty = Boolean(process.stdin.isTTY && process.stdout.isTTY);
  const image = args.image || config.authenticatedImage;
  const egress = egressFrom(args);
  const ports = (args.port as string[]).map((p) => parsePort(p, '--port'));
  if (ports.length && (args.detach || !args.container))
    throw new UsageError('--port forwards while you are attached to a container session', `detached: ${invocation('port')} NAME PORT`);

  const result = await startSession({
    cwd: process.cwd(),
    name,
    prompt,
    container: Boolean(args.container),
    image,
    imageExplicit: Boolean(args.image),
    network: egress.network,
    egress: egress.mode,
    egressExplicit: egress.explicit,
    allow: egress.allow,
    engine: resolveEngine({ context: args.context || undefined, mode: args.engine || undefined, current: currentDockerContext() }),
    engineExplicit: Boolean(args.context || args.engine),
    // PARA_RUNTIME is a default for container sessions; --runtime is asked for.
    runtime: args.runtime || (args.container ? process.env.PARA_RUNTIME || null : null),
    runtimeExplicit: Boolean(args.runtime),
    limits: limitsFrom(args),
    detach: Boolean(args.detach),
    ask: Boolean(args.ask),
    credentials: credentialsFrom(args.credentials),
    userConfig: args.container ? await userConfig(args) : undefined,
    command: command.length ? command : undefined,
    tty,
    invocation,
    warn,
    log: json ? undefined : log,
  });
  const s = result.session;
  if (json) printJson(summary(result));
  else
    log(
      `${result.resumed ? 'resumed' : 'started'} session ${s.name}: branch ${s.branch}, ${s.engine?.remote ? `files in its volume on ${describeEngine(s.engine)} (sync ${s.name} --files brings them here)` : `folder ${s.worktree}`}${s.container ? `, container ${s.container}` : ''}`,
    );
  if (result.action === 'job' && !json) log(`running in the background; output: ${invocation('logs')} ${s.name} -f`);

  if (result.action !== 'attach' || args.detach) return 0;
  if (s.container) {
    // --port: forwards that live as long as the terminal is attached.
    const forwards = await Promise.all(ports.map((port) => forwardPort(engineOf(s), s.container!, port, 0)));
    for (const [i, f] of forwards.entries()) log(`port ${ports[i]} of session ${s.name}: ${f.address} (while you are attached)`);
    const code = await attach(sessionEngine(s), s.container!, workTreeOf(s), result.command).finally(() => Promise.all(forwards.map((f) => f.close())));
    const again = `${invocation('start')} ${s.name} --container${args.image ? ` --image ${image}` : ''}`;
    log(`left session ${s.name}; the container keeps running. Back in: ${again}`);
    return code;
  }
  if (!tty) return 0;
  // Without a container: claude on the host, in the worktree, when it is installed.
  const claude = await execa('claude', result.command.slice(1), { cwd: s.worktree, stdio: 'inherit', reject: false });
  if ((claude as { code?: string }).code === 'ENOENT') warn('claude is not installed on this machine; the worktree is ready at ' + s.worktree);
  return claude.exitCode ?? 0;
}

await runMain(main);
