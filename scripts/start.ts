// Start (or resume) a session: a branch and worktree, and with --container its own container.
import { execa } from 'execa';
import fs from 'fs-extra';
import { assertSupportedPlatform, log, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { config } from './lib/config.ts';
import { UsageError } from './lib/errors.ts';
import { looksLikePrompt } from './lib/names.ts';
import { attach } from './lib/session-container.ts';
import { startSession, type StartResult } from './lib/session-start.ts';

const USAGE = `Usage:
  npx tsx scripts/start.ts NAME [--container]             a named session
  npx tsx scripts/start.ts "PROMPT TEXT" --container      a prompt; the name is derived from it
  npx tsx scripts/start.ts [NAME] -p TEXT | --prompt-file FILE
  npx tsx scripts/start.ts NAME --container [--detach] -- CMD [ARGS...]

Creates branch para/NAME, worktree .para/worktrees/NAME and state .para/state/NAME.json.
Starting an existing session resumes it (claude --continue).

Options:
  --container          run the session in a container from --image
  --image IMAGE        default: ${config.authenticatedImage}
  --detach             return once the container runs; a prompt or -- CMD runs in the background
                       (read its output with scripts/logs.ts NAME)
  --network MODE       docker network for the container (default: docker's own)
  -p, --prompt TEXT    the prompt for claude
  --prompt-file FILE   read the prompt from FILE
  --json               print one JSON object on stdout
  --verbose            show stack traces on errors
  -h, --help           show this help

Names: 1-50 characters, a letter or digit first, then letters, digits, "_" or "-".`;

function summary(result: StartResult): Record<string, unknown> {
  const s = result.session;
  return { name: s.name, branch: s.branch, worktree: s.worktree, container: s.container, image: s.image, status: s.status, prompt: s.prompt, resumed: result.resumed, job: s.job };
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    string: ['prompt', 'prompt-file', 'image', 'network'],
    boolean: ['container', 'detach', 'json', 'verbose', 'help'],
    alias: { p: 'prompt', h: 'help' },
    doubleDash: true,
  });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  const positional = args._.map(String);
  if (positional.length > 1) throw new UsageError(`expected at most one NAME or "PROMPT", got ${positional.length} arguments`, 'quote a prompt: start.ts "implement feature X" --container');
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
      if (prompt) throw new UsageError('a prompt was given twice (as an argument and with --prompt)', 'pass the name as the argument and the prompt with --prompt');
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

  const result = await startSession({
    cwd: process.cwd(),
    name,
    prompt,
    container: Boolean(args.container),
    image: args.image || config.authenticatedImage,
    network: args.network || undefined,
    detach: Boolean(args.detach),
    command: command.length ? command : undefined,
    tty,
    warn,
  });
  const s = result.session;
  if (json) printJson(summary(result));
  else log(`${result.resumed ? 'resumed' : 'started'} session ${s.name}: branch ${s.branch}, worktree ${s.worktree}${s.container ? `, container ${s.container}` : ''}`);
  if (result.action === 'job' && !json) log(`running in the background; output: npx tsx scripts/logs.ts ${s.name} -f`);

  if (result.action !== 'attach' || args.detach) return 0;
  if (s.container) {
    const code = await attach(s.container, s.worktree, result.command);
    log(`left session ${s.name}; the container keeps running. Back in: npx tsx scripts/start.ts ${s.name} --container`);
    return code;
  }
  if (!tty) return 0;
  // Without a container: claude on the host, in the worktree, when it is installed.
  const claude = await execa('claude', result.command.slice(1), { cwd: s.worktree, stdio: 'inherit', reject: false });
  if ((claude as { code?: string }).code === 'ENOENT') warn('claude is not installed on this machine; the worktree is ready at ' + s.worktree);
  return claude.exitCode ?? 0;
}

await runMain(main);
