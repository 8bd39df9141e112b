// The seam between para and a container engine. Everything para asks of an engine (run a
// container from a spec, exec in it with streams, copy files in, inspect and remove containers,
// volumes and images by label) is a method of Engine; DockerEngine is the one backend today, the
// docker CLI aimed at one target (the default engine, a context, a DOCKER_HOST). A session records
// its target and gets its engine back with engineFor(), so nothing depends on the shell's
// DOCKER_CONTEXT or DOCKER_HOST once a session exists. Another backend is one more class.
import { config } from '../config.ts';
import { connectionError, docker, parseDockerJson, type DockerOptions, type DockerResult } from './docker.ts';
import { traced } from '../trace.ts';
import { localSocket, socketLogs, type LogQuery } from './api.ts';
import { labelArgs, runArgs, type RunSpec } from './spec.ts';
import { describeEngine, type EngineTarget } from './target.ts';

export interface ImageInfo {
  Id: string;
  Created: string;
  /** Its tags (empty: a dangling image, replaced by a newer build under its tag). */
  RepoTags?: string[];
  Config: { Labels: Record<string, string> | null; User?: string; Env?: string[] | null; Cmd?: string[] | null };
}

export interface ContainerInfo {
  Id: string;
  Name: string;
  /** The ID of the image it runs from. */
  Image: string;
  Created: string;
  State: { Status: string; Running: boolean; Paused?: boolean; ExitCode: number; StartedAt: string; FinishedAt: string };
  Config: { Labels: Record<string, string> | null; Image: string; User: string; Env: string[] | null; Cmd: string[] | null };
  HostConfig: { NetworkMode: string; Binds: string[] | null };
  Mounts: Array<{ Source: string; Destination: string; RW: boolean; Type: string }>;
}

export interface VolumeInfo {
  Name: string;
  Labels: Record<string, string> | null;
}

export interface ServerVersion {
  Version: string;
  ApiVersion: string;
  Os?: string;
  Arch?: string;
}

export interface BuildOptions {
  dockerfile: string;
  context: string;
  tag: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  /** Stream the build log live to stderr. */
  stream?: boolean;
  network?: string;
}

/** How a command runs in a container; the user is always named (root, or the image's agent user). */
export interface ExecOptions extends Omit<DockerOptions, 'inheritStdio' | 'target'> {
  /** uid or user name. */
  user: string;
  workdir?: string;
  /** Keep standard input open (also implied by `input` / `inputFile`). */
  interactive?: boolean;
  /** Give the command our terminal. */
  tty?: boolean;
  detach?: boolean;
  /** Environment of the command inside the container (never a secret: docker shows it). */
  containerEnv?: Record<string, string>;
}

export type Labels = Record<string, string | true>;

export interface Engine {
  /** Where the engine is: null for whatever the shell's DOCKER_CONTEXT / DOCKER_HOST name. */
  readonly target: EngineTarget | null;
  /** The engine cannot see this machine's files (no bind mounts). */
  readonly remote: boolean;
  /** The OCI runtime session containers run under; null: the engine's default. */
  readonly runtime: string | null;
  describe(): string;

  /** A raw CLI call on this engine: the escape hatch for what has no verb yet. */
  docker(args: string[], options?: Omit<DockerOptions, 'target'>): Promise<DockerResult>;

  /** Runs a container from a spec; detached: returns once it has started. */
  run(spec: RunSpec, options?: Omit<DockerOptions, 'target'> & { detach?: boolean }): Promise<DockerResult>;
  /** Creates a container from a spec without starting it. */
  create(spec: RunSpec): Promise<void>;
  exec(container: string, command: string[], options: ExecOptions): Promise<DockerResult>;
  /** Unpacks a tar archive into a folder of the container. */
  copyIn(container: string, folder: string, archive: Buffer): Promise<void>;

  inspectContainer(ref: string): Promise<ContainerInfo | undefined>;
  /** A container's standard output log (the last lines, or since a time); throws when it cannot be read. */
  logs(container: string, query?: LogQuery): Promise<string>;
  listContainers(labels: Labels): Promise<ContainerInfo[]>;
  startContainer(ref: string): Promise<void>;
  /** Restarts at once (no grace period): every process in it ends. */
  restartContainer(ref: string): Promise<void>;
  /** Freezes every process of a container (nothing in it runs until unpause). */
  pauseContainer(ref: string): Promise<void>;
  unpauseContainer(ref: string): Promise<void>;
  /** Removes a container and its anonymous volumes; false when it did not exist. */
  removeContainer(ref: string, options?: { force?: boolean }): Promise<boolean>;
  commitContainer(ref: string, tag: string, changes?: string[]): Promise<string>;

  inspectVolume(name: string): Promise<VolumeInfo | undefined>;
  listVolumes(labels: Labels): Promise<VolumeInfo[]>;
  /** false when it did not exist. */
  removeVolume(name: string): Promise<boolean>;

  inspectImage(ref: string): Promise<ImageInfo | undefined>;
  buildImage(options: BuildOptions): Promise<DockerResult>;
  tagImage(source: string, target: string): Promise<void>;
  /** false when it did not exist. */
  removeImage(ref: string, options?: { force?: boolean }): Promise<boolean>;

  /** The daemon's version; an engine that cannot be reached throws a DockerError whose kind says why. */
  serverVersion(timeoutMs?: number): Promise<ServerVersion>;
  /** The client's own version; does not contact the engine. */
  clientVersion(timeoutMs?: number): Promise<string>;
  /** The OCI runtimes the engine offers (runc, and runsc when gVisor is registered). */
  runtimes(): Promise<string[]>;
}

const quick = () => config.timeouts.dockerQuickMs;

// docker's exact "not found" texts; anything else (a missing context, a daemon error) is rethrown.
// 20.10 prints `no such image: x: No such image: x:latest`, newer daemons `No such image: x:latest`.
const NO_SUCH_IMAGE = /No such image: /;
const NO_SUCH_CONTAINER = /No such container: /;
const NO_SUCH_OBJECT = /No such object: /;
// `get x: no such volume` (20.10 and later daemons), `No such volume: x` (older).
const NO_SUCH_VOLUME = /: no such volume\b|No such volume: /;

function labelFilters(labels: Labels): string[] {
  return Object.entries(labels).flatMap(([key, value]) => ['--filter', value === true ? `label=${key}` : `label=${key}=${value}`]);
}

export class DockerEngine implements Engine {
  readonly target: EngineTarget | null;
  readonly runtime: string | null;

  constructor(target: EngineTarget | null, options: { runtime?: string | null } = {}) {
    this.target = target;
    this.runtime = options.runtime ?? null;
  }

  get remote(): boolean {
    return this.target?.remote ?? false;
  }

  describe(): string {
    return this.target ? describeEngine(this.target) : 'the docker engine the shell names';
  }

  docker(args: string[], options: Omit<DockerOptions, 'target'> = {}): Promise<DockerResult> {
    return docker(args, { ...options, target: this.target ?? undefined });
  }

  async logs(container: string, query: LogQuery = {}): Promise<string> {
    const socket = localSocket(this.target);
    const fast = socket ? await traced('docker-api', ['logs', container], () => socketLogs(socket, container, query, quick())) : undefined;
    if (fast !== undefined) return fast;
    const args = ['logs', ...(query.tail !== undefined ? ['--tail', String(query.tail)] : []), ...(query.since ? ['--since', query.since] : []), container];
    const result = await this.docker(args, { allowFailure: true, timeoutMs: quick() });
    if (result.exitCode !== 0) throw connectionError('command-failed', args, result);
    return result.stdout;
  }

  run(spec: RunSpec, options: Omit<DockerOptions, 'target'> & { detach?: boolean } = {}): Promise<DockerResult> {
    const { detach, ...rest } = options;
    return this.docker(['run', ...(detach ? ['--detach'] : []), ...runArgs(spec)], { timeoutMs: config.timeouts.dockerRunMs, ...rest });
  }

  async create(spec: RunSpec): Promise<void> {
    await this.docker(['create', ...runArgs(spec)], { timeoutMs: config.timeouts.dockerRunMs });
  }

  exec(container: string, command: string[], options: ExecOptions): Promise<DockerResult> {
    const { user, workdir, interactive, tty, detach, containerEnv, ...rest } = options;
    const args = ['exec', '--user', user];
    if (workdir) args.push('--workdir', workdir);
    for (const [key, value] of Object.entries(containerEnv ?? {})) args.push('--env', `${key}=${value}`);
    if (interactive || rest.input !== undefined || rest.inputFile !== undefined) args.push('--interactive');
    if (tty) args.push('--tty');
    if (detach) args.push('--detach');
    args.push(container, ...command);
    return this.docker(args, { timeoutMs: quick(), ...rest, inheritStdio: Boolean(tty) });
  }

  async copyIn(container: string, folder: string, archive: Buffer): Promise<void> {
    await this.docker(['cp', '-', `${container}:${folder}`], { input: archive, timeoutMs: quick() });
  }

  inspectContainer(ref: string): Promise<ContainerInfo | undefined> {
    return this.inspect<ContainerInfo>('container', ref, [NO_SUCH_CONTAINER, NO_SUCH_OBJECT]);
  }

  async listContainers(labels: Labels): Promise<ContainerInfo[]> {
    const ids = (await this.docker(['ps', '--all', '--no-trunc', '--quiet', ...labelFilters(labels)], { timeoutMs: quick() })).stdout
      .split('\n')
      .filter(Boolean);
    return this.inspectAll<ContainerInfo>('container', ids);
  }

  /** Many objects' JSON in one call; one removed since it was listed is simply absent. */
  private async inspectAll<T>(kind: 'container' | 'volume', refs: string[]): Promise<T[]> {
    if (refs.length === 0) return [];
    const args = [kind, 'inspect', '--format', '{{json .}}', ...refs];
    const result = await this.docker(args, { allowFailure: true, timeoutMs: quick() });
    return result.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => parseDockerJson<T>(args, { ...result, stdout: line }));
  }

  /** One object's JSON; undefined when docker says it does not exist, any other failure throws. */
  private async inspect<T>(kind: 'container' | 'volume' | 'image', ref: string, notFound: RegExp[]): Promise<T | undefined> {
    const args = [kind, 'inspect', '--format', '{{json .}}', ref];
    const result = await this.docker(args, { allowFailure: true, timeoutMs: quick() });
    if (result.exitCode === 0) return parseDockerJson<T>(args, result);
    if (notFound.some((pattern) => pattern.test(result.stderr))) return undefined;
    throw connectionError('command-failed', args, result);
  }

  async startContainer(ref: string): Promise<void> {
    await this.docker(['start', ref], { timeoutMs: config.timeouts.dockerRunMs });
  }

  async restartContainer(ref: string): Promise<void> {
    await this.docker(['restart', '--time', '0', ref], { timeoutMs: quick() });
  }

  async pauseContainer(ref: string): Promise<void> {
    await this.docker(['pause', ref], { timeoutMs: quick() });
  }

  async unpauseContainer(ref: string): Promise<void> {
    await this.docker(['unpause', ref], { timeoutMs: quick() });
  }

  async removeContainer(ref: string, options: { force?: boolean } = { force: true }): Promise<boolean> {
    const args = ['rm', '--volumes', ...(options.force ? ['--force'] : []), ref];
    const result = await this.docker(args, { allowFailure: true, timeoutMs: quick() });
    if (result.exitCode === 0) return true;
    if (NO_SUCH_CONTAINER.test(result.stderr)) return false;
    throw connectionError('command-failed', args, result);
  }

  async commitContainer(ref: string, tag: string, changes: string[] = []): Promise<string> {
    const args = ['commit', ...changes.flatMap((change) => ['--change', change]), ref, tag];
    return (await this.docker(args, { timeoutMs: config.timeouts.buildMs })).stdout.trim();
  }

  inspectVolume(name: string): Promise<VolumeInfo | undefined> {
    return this.inspect<VolumeInfo>('volume', name, [NO_SUCH_VOLUME]);
  }

  async listVolumes(labels: Labels): Promise<VolumeInfo[]> {
    const args = ['volume', 'ls', '--format', '{{json .}}', ...labelFilters(labels)];
    const result = await this.docker(args, { timeoutMs: quick() });
    const names = result.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => parseDockerJson<{ Name: string }>(args, { ...result, stdout: line }).Name);
    return this.inspectAll<VolumeInfo>('volume', names);
  }

  async removeVolume(name: string): Promise<boolean> {
    const args = ['volume', 'rm', name];
    const result = await this.docker(args, { allowFailure: true, timeoutMs: quick() });
    if (result.exitCode === 0) return true;
    if (NO_SUCH_VOLUME.test(result.stderr)) return false;
    throw connectionError('command-failed', args, result);
  }

  inspectImage(ref: string): Promise<ImageInfo | undefined> {
    return this.inspect<ImageInfo>('image', ref, [NO_SUCH_IMAGE]);
  }

  buildImage(options: BuildOptions): Promise<DockerResult> {
    const args = ['build', '--force-rm', '-f', options.dockerfile, '-t', options.tag];
    for (const [key, value] of Object.entries(options.buildArgs ?? {})) args.push('--build-arg', `${key}=${value}`);
    args.push(...labelArgs(options.labels ?? {}));
    if (options.network) args.push('--network', options.network);
    args.push(options.context);
    return this.docker(args, { stream: options.stream, timeoutMs: config.timeouts.buildMs, env: { DOCKER_BUILDKIT: '0' } });
  }

  async tagImage(source: string, target: string): Promise<void> {
    await this.docker(['tag', source, target], { timeoutMs: quick() });
  }

  async removeImage(ref: string, options: { force?: boolean } = {}): Promise<boolean> {
    const args = ['image', 'rm', ...(options.force ? ['--force'] : []), ref];
    const result = await this.docker(args, { allowFailure: true, timeoutMs: quick() });
    if (result.exitCode === 0) return true;
    if (NO_SUCH_IMAGE.test(result.stderr)) return false;
    throw connectionError('command-failed', args, result);
  }

  async serverVersion(timeoutMs = quick()): Promise<ServerVersion> {
    const args = ['version', '--format', '{{json .Server}}'];
    return parseDockerJson<ServerVersion>(args, await this.docker(args, { timeoutMs }));
  }

  async runtimes(): Promise<string[]> {
    const args = ['info', '--format', '{{json .Runtimes}}'];
    return Object.keys(parseDockerJson<Record<string, unknown>>(args, await this.docker(args, { timeoutMs: quick() })) ?? {}).sort();
  }

  async clientVersion(timeoutMs = quick()): Promise<string> {
    const result = await this.docker(['--version'], { timeoutMs });
    return /version\s+([^\s,]+)/i.exec(result.stdout)?.[1] ?? result.stdout.trim();
  }
}

/** The engine the shell names (DOCKER_CONTEXT / DOCKER_HOST / the current context): where images are built. */
export const shellEngine: Engine = new DockerEngine(null);

/** The engine at a recorded target (a session's), whatever the shell names now. */
export function engineFor(target: EngineTarget, options: { runtime?: string | null } = {}): Engine {
  return new DockerEngine(target, options);
}
