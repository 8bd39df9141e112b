// Argument parsing, platform check and the one top-level error handler every script uses.
import minimist from 'minimist';
import readline from 'node:readline/promises';
import path from 'node:path';
import { ParaError, UsageError, errorMessage } from './errors.ts';

export interface ArgSpec {
  string?: string[];
  boolean?: string[];
  alias?: Record<string, string>;
  default?: Record<string, unknown>;
  /** Collect everything after `--` into `argv['--']`. */
  doubleDash?: boolean;
  /** String options that may be given more than once (always read as arrays). */
  repeatable?: string[];
}

export type ParsedArgs = minimist.ParsedArgs;

/** Parses argv by declaration; any undeclared flag is a usage error. */
export function parseArgs(argv: string[], spec: ArgSpec): ParsedArgs {
  const known = new Set<string>([...(spec.string ?? []), ...(spec.repeatable ?? []), ...(spec.boolean ?? [])]);
  for (const [short, long] of Object.entries(spec.alias ?? {})) {
    known.add(short);
    known.add(long);
  }
  const unknown = new Set<string>();
  const parsed = minimist(argv, {
    // '_' keeps positional arguments as typed: a session named 007 must not become 7.
    string: [...(spec.string ?? []), ...(spec.repeatable ?? []), '_'],
    boolean: spec.boolean,
    alias: spec.alias,
    default: spec.default,
    '--': spec.doubleDash ?? false,
    unknown: (arg) => {
      if (!arg.startsWith('-') || arg === '-') return true;
      // A cluster such as -rf is several short options: each letter is checked on its own.
      const names = /^-[^-]{2,}/.test(arg) ? [...arg.slice(1).split('=')[0]] : [arg.replace(/^-+/, '').split('=')[0]];
      const bad = names.filter((name) => !known.has(name));
      for (const name of bad) unknown.add(name.length === 1 ? `-${name}` : `--${name}`);
      return bad.length === 0;
    },
  });
  if (unknown.size > 0) {
    throw new UsageError(`unknown option${unknown.size > 1 ? 's' : ''} ${[...unknown].join(', ')}`, 'see --help for the accepted options');
  }
  const options = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  for (const name of spec.string ?? []) {
    const value = parsed[name];
    if (Array.isArray(value)) throw new UsageError(`--${name} was given more than once`);
    const shorts = Object.entries(spec.alias ?? {})
      .filter(([, long]) => long === name)
      .map(([short]) => short);
    const given = options.some((a) => a === `--${name}` || a.startsWith(`--${name}=`) || shorts.some((s) => a === `-${s}`));
    if (value === '' && given) throw new UsageError(`--${name} needs a value`);
  }
  for (const name of spec.repeatable ?? []) {
    const value = parsed[name];
    const values: string[] = value === undefined ? [] : Array.isArray(value) ? value.map(String) : [String(value)];
    if (values.some((v) => v === '')) throw new UsageError(`--${name} needs a value`);
    parsed[name] = values;
  }
  return parsed;
}

export function assertSupportedPlatform(platform: NodeJS.Platform = process.platform): void {
  if (platform === 'win32') {
    throw new ParaError('Windows is not supported yet: para runs on Linux and macOS.', {
      hint: 'use a Linux machine, a macOS machine, or a Linux VM (WSL 2 is untested)',
      code: 'unsupported-platform',
    });
  }
}

/** Whether progress may be shown: a terminal, not CI, not --json. */
export function isInteractive(json = false): boolean {
  return !json && Boolean(process.stderr.isTTY) && !process.env.CI;
}

/** Progress and warnings may quote what a container printed: control characters are shown escaped. */
export function log(message: string): void {
  process.stderr.write(`${forTerminal(message)}\n`);
}

export function warn(message: string): void {
  process.stderr.write(`warning: ${forTerminal(message)}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Runs a script's main() and turns a thrown error into a message, an optional JSON
 * document and an exit code. The only place where a script's errors are printed.
 */
export async function runMain(main: (argv: string[]) => Promise<number | undefined>): Promise<void> {
  const argv = process.argv.slice(2);
  const dashIndex = argv.indexOf('--');
  const flags = dashIndex === -1 ? argv : argv.slice(0, dashIndex);
  const json = flags.includes('--json');
  const verbose = flags.includes('--verbose') || process.env.PARA_VERBOSE === '1';
  try {
    const code = await main(argv);
    process.exitCode = code ?? 0;
  } catch (error) {
    const para = error instanceof ParaError ? error : undefined;
    const message = errorMessage(error);
    // A message may carry what a container printed (the agent's words): no control character reaches the terminal.
    process.stderr.write(`error: ${forTerminal(message)}\n`);
    if (para?.hint) process.stderr.write(`  next step: ${forTerminal(para.hint)}\n`);
    const cause = error instanceof Error ? (error.cause as { stderr?: string } | undefined) : undefined;
    if (cause && typeof cause.stderr === 'string' && cause.stderr.trim() && !message.includes(cause.stderr.trim())) {
      process.stderr.write(`  ${forTerminal(cause.stderr.trim()).split('\n').join('\n  ')}\n`);
    }
    if (verbose && error instanceof Error) {
      process.stderr.write(`${error.stack ?? ''}\n`);
      if (error.cause instanceof Error) process.stderr.write(`caused by: ${error.cause.stack ?? error.cause.message}\n`);
    } else if (!para) {
      process.stderr.write('  (run again with --verbose for details)\n');
    }
    if (json) {
      printJson({ ok: false, error: { code: para?.code ?? 'internal', message, hint: para?.hint ?? null } });
    }
    process.exitCode = para?.exitCode ?? 1;
  }
}

const SCRIPT_OF: Record<string, string> = { image: 'build-image', login: 'login' };

let viaPara = false;
let paraEntry = '';

/** Called by the `para` command before it runs a verb: hints then read `para <verb>`. */
export function useParaInvocation(entry = ''): void {
  viaPara = true;
  paraEntry = entry;
}

/** The argument vector that runs another verb with this same program (the para command, a bundle, or tsx). */
export function selfCommand(verb: string, argv1 = process.argv[1] ?? ''): string[] {
  if (viaPara && paraEntry) return [process.execPath, ...process.execArgv, paraEntry, verb];
  const script = path.join(path.dirname(argv1), `${SCRIPT_OF[verb] ?? verb}${path.extname(argv1) || '.mjs'}`);
  return [process.execPath, ...process.execArgv, script];
}

/**
 * How to run another verb the way the user ran this one, for hints: `para logs` from the para
 * command, `npx tsx scripts/logs.ts` from a tsx run, `node .../dist/logs.mjs` from a bundle.
 */
export function invocation(verb: string, argv1 = process.argv[1] ?? '', cwd = process.cwd()): string {
  if (viaPara) return `para ${verb}`;
  const script = SCRIPT_OF[verb] ?? verb;
  const dir = path.dirname(argv1);
  const inside = (file: string) => {
    const relative = path.relative(cwd, file);
    return !relative.startsWith('..') && !path.isAbsolute(relative);
  };
  if (argv1.endsWith('.mjs')) {
    const bundle = path.join(dir, `${script}.mjs`);
    return `node ${inside(bundle) ? path.relative(cwd, bundle) : shellWord(bundle)}`;
  }
  const file = path.join(dir, `${script}.ts`);
  if (inside(file)) return `npx tsx ${path.relative(cwd, file)}`;
  // Outside the checkout, npx finds tsx only through the checkout's own node_modules.
  const checkout = path.dirname(dir);
  return `npx --prefix ${shellWord(checkout)} tsx ${shellWord(file)}`;
}

/**
 * Text from the agent (job output, file names) made safe for a terminal: control characters
 * other than newline and tab are shown escaped, so no escape sequence reaches the terminal.
 */
export function forTerminal(text: string): string {
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/g, (c) =>
    c.charCodeAt(0) > 0xff ? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
}

/** What finish and cancel kept on disk, in words (file names quoted, so no control character reaches the terminal). */
export function keptSummary(uncaptured: string[]): string {
  if (uncaptured.length === 0) return "the agent's repository (agent-repository.tar)";
  const shown = uncaptured
    .slice(0, 5)
    .map((f) => JSON.stringify(f))
    .join(', ');
  return `what could not be committed (${shown}${uncaptured.length > 5 ? `, and ${uncaptured.length - 5} more` : ''})`;
}

/** A path as one shell word, quoted only when it needs to be. */
function shellWord(text: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

const FLAG_OF: Record<string, string> = {
  TAG: '--tag',
  TOKEN_FILE: '--token-file',
  API_KEY_FILE: '--api-key-file',
  REBUILD_BASE: '--rebuild-base',
  IMAGE: '--image',
};

/**
 * A make target as the user can type it: `para image --tag X` under the para command (which has
 * no Makefile behind it), else `make image TAG=X` from the checkout.
 */
export function makeCommand(target: string, vars: Record<string, string> = {}): string {
  if (viaPara) {
    const flags = Object.entries(vars).map(([key, value]) =>
      value === '1' && key === 'REBUILD_BASE' ? FLAG_OF[key] : `${FLAG_OF[key] ?? `--${key.toLowerCase()}`} ${value}`,
    );
    return ['para', target === 'clean-sessions' ? 'clean' : target, ...flags].join(' ');
  }
  return ['make', target, ...Object.entries(vars).map(([key, value]) => `${key}=${value}`)].join(' ');
}

/** A yes/no question on the terminal (stderr); only "y" or "yes" is yes. */
export async function confirm(question: string): Promise<boolean> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    return /^y(es)?$/i.test((await rl.question(question)).trim());
  } finally {
    rl.close();
  }
}
