// Which Docker engine a session lives on. A session records the engine it was started on (a
// docker context, a DOCKER_HOST, or the default engine) and every later docker call for it goes
// there, whatever the shell's DOCKER_CONTEXT or DOCKER_HOST say then. A remote engine does not see
// this machine's files: its sessions get no bind mount at all (see session/transport.ts).
import { AsyncLocalStorage } from 'node:async_hooks';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from './errors.ts';

export interface Engine {
  /** A docker context name, or null. */
  context: string | null;
  /** A DOCKER_HOST value (when no context is named), or null. */
  host: string | null;
  /** Whether the engine cannot see this machine's files (no bind mounts). */
  remote: boolean;
}

export const DEFAULT_ENGINE: Engine = { context: null, host: null, remote: false };

const LOCAL_SOCKETS = new Set(['unix:///var/run/docker.sock', 'unix:///run/docker.sock']);

/**
 * The engine a new session goes to: --context, else DOCKER_CONTEXT, else DOCKER_HOST, else the
 * docker CLI's current context (`current`, from `docker context show`). The default engine and
 * the local socket are local; any other context or host is remote unless `mode` says otherwise.
 */
export function resolveEngine(options: { context?: string; mode?: string; current?: string | null; env?: NodeJS.ProcessEnv }): Engine {
  const env = options.env ?? process.env;
  const mode = options.mode ?? env.PARA_ENGINE;
  if (mode !== undefined && mode !== '' && mode !== 'local' && mode !== 'remote')
    throw new UsageError(
      `--engine ${JSON.stringify(mode)} is not local or remote`,
      "use --engine local (the engine sees this machine's files) or --engine remote",
    );
  const named = options.context || env.DOCKER_CONTEXT || (env.DOCKER_HOST ? undefined : options.current || undefined);
  const context = named && named !== 'default' ? named : null;
  const host = context ? null : env.DOCKER_HOST || null;
  const local = mode ? mode === 'local' : !context && (!host || LOCAL_SOCKETS.has(host));
  return { context, host, remote: !local };
}

export function describeEngine(engine: Engine): string {
  if (engine.context) return `docker context ${engine.context}`;
  if (engine.host) return `DOCKER_HOST=${engine.host}`;
  return 'the default docker engine';
}

export function sameEngine(a: Engine, b: Engine): boolean {
  return a.context === b.context && a.host === b.host;
}

const current = new AsyncLocalStorage<Engine>();

/** Runs fn with every docker call in it going to `engine`. */
export function onEngine<T>(engine: Engine | undefined, fn: () => Promise<T>): Promise<T> {
  return engine ? current.run(engine, fn) : fn();
}

/** The environment that sends a docker call to the engine in force (none set: the shell's own). */
export function engineEnv(): Record<string, string | undefined> {
  const engine = current.getStore();
  if (!engine) return {};
  if (engine.context) return { DOCKER_CONTEXT: engine.context, DOCKER_HOST: undefined };
  if (engine.host) return { DOCKER_HOST: engine.host, DOCKER_CONTEXT: undefined };
  return { DOCKER_HOST: undefined, DOCKER_CONTEXT: 'default' };
}

export function activeEngine(): Engine | undefined {
  return current.getStore();
}

/** The docker CLI's current context (`docker context use`), read from its configuration file; null when none is set. */
export function currentDockerContext(env: NodeJS.ProcessEnv = process.env): string | null {
  const dir = env.DOCKER_CONFIG || path.join(os.homedir(), '.docker');
  try {
    const data = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as { currentContext?: unknown };
    return typeof data.currentContext === 'string' && data.currentContext ? data.currentContext : null;
  } catch {
    return null;
  }
}
