// Which Docker engine: a docker context, a DOCKER_HOST, or the default engine. A session records
// the target it was started on, and every later docker call for it goes there (engine.ts),
// whatever the shell's DOCKER_CONTEXT or DOCKER_HOST say then. A remote engine does not see this
// machine's files: its sessions get no bind mount at all (see session/transport.ts).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../errors.ts';

export interface EngineTarget {
  /** A docker context name, or null. */
  context: string | null;
  /** A DOCKER_HOST value (when no context is named), or null. */
  host: string | null;
  /** Whether the engine cannot see this machine's files (no bind mounts). */
  remote: boolean;
}

export const DEFAULT_ENGINE: EngineTarget = { context: null, host: null, remote: false };

const LOCAL_SOCKETS = new Set(['unix:///var/run/docker.sock', 'unix:///run/docker.sock']);

/**
 * The engine a new session goes to: --context, else DOCKER_CONTEXT, else DOCKER_HOST, else the
 * docker CLI's current context (`current`, from `docker context show`). The default engine and
 * the local socket are local; any other context or host is remote unless `mode` says otherwise.
 */
export function resolveEngine(options: { context?: string; mode?: string; current?: string | null; env?: NodeJS.ProcessEnv }): EngineTarget {
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

export function describeEngine(engine: EngineTarget): string {
  if (engine.context) return `docker context ${engine.context}`;
  if (engine.host) return `DOCKER_HOST=${engine.host}`;
  return 'the default docker engine';
}

export function sameEngine(a: EngineTarget, b: EngineTarget): boolean {
  return a.context === b.context && a.host === b.host;
}

/** The environment that sends a docker call to `target` (none given: the shell's own). */
export function targetEnv(target: EngineTarget | undefined): Record<string, string | undefined> {
  if (!target) return {};
  if (target.context) return { DOCKER_CONTEXT: target.context, DOCKER_HOST: undefined };
  if (target.host) return { DOCKER_HOST: target.host, DOCKER_CONTEXT: undefined };
  return { DOCKER_HOST: undefined, DOCKER_CONTEXT: 'default' };
}

/** A key that tells two targets apart (for grouping sessions by engine). */
export function targetKey(target: EngineTarget): string {
  return `${target.context ?? ''}\n${target.host ?? ''}`;
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
