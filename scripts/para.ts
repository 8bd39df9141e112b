#!/usr/bin/env node
// The para command: `para <command> [options]`, one entry for every script, as git and docker do.
import { UsageError } from './lib/errors.ts';
import { printJson, useParaInvocation } from './lib/cli.ts';

const COMMANDS: Array<{ name: string; script: () => Promise<unknown>; summary: string }> = [
  { name: 'image', script: () => import('./build-image.ts'), summary: 'build para-authenticated:latest from your Claude login' },
  { name: 'login', script: () => import('./login.ts'), summary: 'log in inside a throwaway container and save it as the image' },
  { name: 'start', script: () => import('./start.ts'), summary: 'start or resume a session: para start NAME|"PROMPT" --container' },
  { name: 'list', script: () => import('./list.ts'), summary: "list this repository's sessions" },
  { name: 'watch', script: () => import('./watch.ts'), summary: 'one live view of every session: who waits for you, what changed' },
  { name: 'logs', script: () => import('./logs.ts'), summary: "show a background job's output (-f follows it)" },
  { name: 'diff', script: () => import('./diff.ts'), summary: 'show what a session changed, uncommitted files included' },
  { name: 'log', script: () => import('./log.ts'), summary: "list a session's commits since it started" },
  { name: 'merge', script: () => import('./merge.ts'), summary: "merge a session's commits into your branch (--squash)" },
  { name: 'sync', script: () => import('./sync.ts'), summary: "bring a session's commits to para/NAME" },
  { name: 'port', script: () => import('./port.ts'), summary: "forward a local port to a port inside a session's container" },
  { name: 'egress', script: () => import('./egress.ts'), summary: "what a session's proxy refused and admitted, per host" },
  { name: 'allow', script: () => import('./allow.ts'), summary: "admit more hosts in a running session's egress" },
  { name: 'finish', script: () => import('./finish.ts'), summary: 'keep the work on para/NAME and remove the session' },
  { name: 'cancel', script: () => import('./cancel.ts'), summary: 'archive the work and remove the session' },
  { name: 'clean', script: () => import('./clean.ts'), summary: "remove this repository's orphaned containers and volumes" },
  { name: 'mcp', script: () => import('./mcp.ts'), summary: 'serve the session verbs as MCP tools (mcp install: add it to .mcp.json)' },
  { name: 'doctor', script: () => import('./doctor.ts'), summary: 'say why a container cannot authenticate' },
];

const USAGE = `usage: para <command> [options]

Runs Claude Code sessions in parallel, each on its own branch para/NAME and in its own container.

${COMMANDS.map((c) => `   ${c.name.padEnd(8)} ${c.summary}`).join('\n')}

'para <command> --help' describes a command. Quick start:
   para image                                   once: bake your Claude login into the image
   para start my-feature --container            a named session, claude attached
   para start "implement feature X" --container a prompt; the name is derived from it`;

function fail(message: string, hint: string): never {
  // No script has run yet, so the one top-level handler is not there to print this.
  const error = new UsageError(message, hint);
  process.stderr.write(`error: ${error.message}\n  next step: ${hint}\n`);
  if (process.argv.includes('--json')) printJson({ ok: false, error: { code: error.code, message: error.message, hint } });
  process.exit(error.exitCode);
}

const [command, ...rest] = process.argv.slice(2);
if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
  const target = command === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
  if (target) {
    process.argv = [process.argv[0], target.name, '--help'];
    useParaInvocation();
    await target.script();
  } else {
    process.stdout.write(`${USAGE}\n`);
    if (command === undefined) process.exitCode = 1;
  }
} else if (command === '--version' || command === '-v') {
  process.stdout.write('para 0.1.0\n');
} else {
  const found = COMMANDS.find((c) => c.name === command);
  if (!found) {
    const near = COMMANDS.filter((c) => c.name.startsWith(command.slice(0, 2))).map((c) => c.name);
    fail(
      `'${command}' is not a para command`,
      near.length ? `did you mean: para ${near.join(', para ')}? (para --help lists them)` : 'para --help lists the commands',
    );
  }
  const entry = process.argv[1] ?? '';
  process.argv = [process.argv[0], found.name, ...rest];
  useParaInvocation(entry);
  await found.script();
}
