// The one wrapper around the docker CLI: every docker call in the project goes through docker().
import { execa, type ResultPromise } from 'execa';
import { config } from './config.ts';
import { ParaError } from './errors.ts';
import { childEnv } from './exec.ts';
import { traced } from './trace.ts';

export type DockerFailure =
  | 'not-installed'
  | 'daemon-down'
  | 'permission-denied'
  | 'host-unreachable'
  | 'timeout'
  | 'command-failed';

export interface DockerResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

export class DockerError extends ParaError {
  readonly kind: DockerFailure;
  readonly args: string[];
  readonly stdout: string;
  readonly stderr: string;
  readonly dockerExitCode: number | undefined;

  constructor(kind: DockerFailure, message: string, details: { args: string[]; stdout?: string; stderr?: string; exitCode?: number; hint?: string; cause?: unknown }) {
    super(message, { hint: details.hint, code: `docker-${kind}`, cause: details.cause });
    this.name = 'DockerError';
    this.kind = kind;
    this.args = details.args;
    this.stdout = details.stdout ?? '';
    this.stderr = details.stderr ?? '';
    this.dockerExitCode = details.exitCode;
  }
}

export interface DockerOptions {
  input?: string;
  timeoutMs?: number;
  /** Copy the command's output live to our stderr while still capturing it. */
  stream?: boolean;
  /** Give the command our terminal (interactive `docker exec -it`). */
  inheritStdio?: boolean;
  /** Write the command's stdout into this file (binary data such as a git bundle). */
  stdoutFile?: string;
  /** Pass the command's stdout straight to ours (a log being followed). */
  stdoutInherit?: boolean;
  /** Receive the command's stdout as it comes, instead of buffering it. */
  onStdout?: (chunk: Buffer) => void;
  /** Return non-zero exits instead of throwing (connection failures still throw). */
  allowFailure?: boolean;
  env?: Record<string, string | undefined>;
}

function dockerHostDescription(env: Record<string, string>): string | undefined {
  if (env.DOCKER_HOST) return `DOCKER_HOST=${env.DOCKER_HOST}`;
  if (env.DOCKER_CONTEXT) return `DOCKER_CONTEXT=${env.DOCKER_CONTEXT}`;
  return undefined;
}

/** Recognises the failures that mean "docker itself is unusable", whatever the command. */
export function classifyConnectionFailure(stderr: string, env: Record<string, string> = childEnv()): DockerFailure | undefined {
  if (/permission denied while trying to connect to the docker (daemon|api)/i.test(stderr)) return 'permission-denied';
  const cannotConnect = /Cannot connect to the Docker daemon|error during connect|dial (unix|tcp)|Is the docker daemon running|failed to connect to the docker API/i.test(stderr);
  if (!cannotConnect) return undefined;
  if (dockerHostDescription(env) || /\btcp:\/\/|ssh:\/\/|context .* not found/i.test(stderr)) return 'host-unreachable';
  return 'daemon-down';
}

export function connectionError(kind: DockerFailure, args: string[], result: Partial<DockerResult>, cause?: unknown): DockerError {
  const env = childEnv();
  const socket = /(?:unix|tcp|ssh):\/\/[^\s".]+(?:\.sock)?/.exec(result.stderr ?? '')?.[0];
  switch (kind) {
    case 'not-installed':
      return new DockerError(kind, 'Docker is not installed: no `docker` command on PATH', {
        args, ...result, cause,
        hint: process.platform === 'darwin'
          ? 'install Docker Desktop (or colima) and make sure `docker info` works'
          : 'install Docker Engine (for example the docker.io package) and make sure `docker info` works',
      });
    case 'permission-denied':
      return new DockerError(kind, `permission denied on the Docker socket${socket ? ` ${socket}` : ''}`, {
        args, ...result, cause,
        hint: 'add your user to the docker group (sudo usermod -aG docker "$USER"), then log out and back in',
      });
    case 'host-unreachable':
      return new DockerError(kind, `the Docker daemon named by ${dockerHostDescription(env) ?? 'the current docker context'} does not answer${socket ? ` (${socket})` : ''}`, {
        args, ...result, cause,
        hint: 'unset DOCKER_HOST / DOCKER_CONTEXT, or run `docker context use default`, or start the daemon it names',
      });
    case 'daemon-down':
      return new DockerError(kind, `the Docker daemon is not running${socket ? ` (nothing answers at ${socket})` : ''}`, {
        args, ...result, cause,
        hint: process.platform === 'darwin' ? 'start Docker Desktop, then run `docker info`' : 'start it (sudo systemctl start docker), then run `docker info`',
      });
    case 'timeout':
      return new DockerError(kind, `docker ${args[0] ?? ''} did not finish in time`, { args, ...result, cause, hint: 'check that the Docker daemon is healthy: docker info' });
    default:
      return new DockerError(kind, `docker ${args.slice(0, 2).join(' ')} failed: ${(result.stderr ?? '').trim() || `exit code ${result.exitCode}`}`, { args, ...result, cause });
  }
}

export async function docker(args: string[], options: DockerOptions = {}): Promise<DockerResult> {
  return traced('docker', args, () => runDocker(args, options));
}

async function runDocker(args: string[], options: DockerOptions): Promise<DockerResult> {
  const env = childEnv(options.env);
  let subprocess: ResultPromise;
  try {
    subprocess = execa('docker', args, {
      env,
      extendEnv: false,
      reject: false,
      input: options.input,
      timeout: options.timeoutMs,
      stdin: options.inheritStdio ? 'inherit' : options.input === undefined ? 'ignore' : 'pipe',
      stdout: options.inheritStdio || options.stdoutInherit ? 'inherit' : options.stdoutFile ? { file: options.stdoutFile } : 'pipe',
      stderr: options.inheritStdio ? 'inherit' : 'pipe',
      stripFinalNewline: false,
      // Output streamed elsewhere (a file, a callback) must not also pile up in memory (maxBuffer).
      buffer: options.onStdout || options.stdoutFile ? { stdout: false } : true,
    });
  } catch (error) {
    throw connectionError('command-failed', args, {}, error);
  }
  if (options.onStdout) subprocess.stdout?.on('data', options.onStdout);
  if (options.stream && !options.inheritStdio) {
    subprocess.stdout?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    subprocess.stderr?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
  }
  const result = await subprocess;
  const out: DockerResult = {
    stdout: typeof result.stdout === 'string' ? result.stdout : '',
    stderr: typeof result.stderr === 'string' ? result.stderr : '',
    exitCode: result.exitCode ?? -1,
  };
  if ((result as { code?: string }).code === 'ENOENT' || /ENOENT/.test(String(result.cause ?? ''))) {
    throw connectionError('not-installed', args, out, result.cause);
  }
  if (result.timedOut) throw connectionError('timeout', args, out, result.cause);
  if (out.exitCode !== 0) {
    const connection = classifyConnectionFailure(out.stderr, env);
    if (connection) throw connectionError(connection, args, out);
    if (!options.allowFailure) throw connectionError('command-failed', args, out);
  }
  return out;
}

/** Parses JSON printed by docker; a parse failure carries the raw output. */
export function parseDockerJson<T>(args: string[], result: DockerResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch (cause) {
    throw new DockerError('command-failed', `could not parse the output of docker ${args.join(' ')}`, { args, ...result, cause });
  }
}

const quick = () => config.timeouts.dockerQuickMs;

/** `--label key=value` for each label, for docker run, create and build. */
export function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([key, value]) => ['--label', `${key}=${value}`]);
}

// ---- images -------------------------------------------------------------------------------

export interface ImageInfo {
  Id: string;
  Created: string;
  Config: { Labels: Record<string, string> | null; User?: string; Env?: string[] | null };
}

/** undefined when the image does not exist; any other failure throws. */
export async function inspectImage(ref: string): Promise<ImageInfo | undefined> {
  const args = ['image', 'inspect', '--format', '{{json .}}', ref];
  const result = await docker(args, { allowFailure: true, timeoutMs: quick() });
  if (result.exitCode !== 0) {
    if (/no such image|not found/i.test(result.stderr)) return undefined;
    throw connectionError('command-failed', args, result);
  }
  return parseDockerJson<ImageInfo>(args, result);
}

export async function imageExists(ref: string): Promise<boolean> {
  return (await inspectImage(ref)) !== undefined;
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

export async function buildImage(options: BuildOptions): Promise<DockerResult> {
  const args = ['build', '--force-rm', '-f', options.dockerfile, '-t', options.tag];
  for (const [key, value] of Object.entries(options.buildArgs ?? {})) args.push('--build-arg', `${key}=${value}`);
  args.push(...labelArgs(options.labels ?? {}));
  if (options.network) args.push('--network', options.network);
  args.push(options.context);
  return docker(args, { stream: options.stream, timeoutMs: config.timeouts.buildMs, env: { DOCKER_BUILDKIT: '0' } });
}

export async function tagImage(source: string, target: string): Promise<void> {
  await docker(['tag', source, target], { timeoutMs: quick() });
}

/** Removes an image reference; false when it did not exist. */
export async function removeImage(ref: string, options: { force?: boolean } = {}): Promise<boolean> {
  const args = ['image', 'rm', ...(options.force ? ['--force'] : []), ref];
  const result = await docker(args, { allowFailure: true, timeoutMs: quick() });
  if (result.exitCode === 0) return true;
  if (/no such image|not found/i.test(result.stderr)) return false;
  throw connectionError('command-failed', args, result);
}

// ---- containers ---------------------------------------------------------------------------

export interface ContainerInfo {
  Id: string;
  Name: string;
  Created: string;
  State: { Status: string; Running: boolean; Paused?: boolean; ExitCode: number; StartedAt: string; FinishedAt: string };
  Config: { Labels: Record<string, string> | null; Image: string; User: string; Env: string[] | null; Cmd: string[] | null };
  HostConfig: { NetworkMode: string; Binds: string[] | null };
  Mounts: Array<{ Source: string; Destination: string; RW: boolean; Type: string }>;
}

export async function inspectContainer(ref: string): Promise<ContainerInfo | undefined> {
  const args = ['container', 'inspect', '--format', '{{json .}}', ref];
  const result = await docker(args, { allowFailure: true, timeoutMs: quick() });
  if (result.exitCode !== 0) {
    if (/no such (container|object)/i.test(result.stderr)) return undefined;
    throw connectionError('command-failed', args, result);
  }
  return parseDockerJson<ContainerInfo>(args, result);
}

/** Containers (running or not) carrying every given label. */
export async function listContainers(options: { labels: Record<string, string | true> }): Promise<ContainerInfo[]> {
  const args = ['ps', '--all', '--no-trunc', '--quiet'];
  for (const [key, value] of Object.entries(options.labels)) args.push('--filter', value === true ? `label=${key}` : `label=${key}=${value}`);
  const ids = (await docker(args, { timeoutMs: quick() })).stdout.split('\n').filter(Boolean);
  if (ids.length === 0) return [];
  const inspectArgs = ['container', 'inspect', '--format', '{{json .}}', ...ids];
  const result = await docker(inspectArgs, { allowFailure: true, timeoutMs: quick() });
  // A container removed between the two calls is simply absent.
  return result.stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => parseDockerJson<ContainerInfo>(inspectArgs, { ...result, stdout: line }));
}

/** Removes a container and its anonymous volumes; false when it did not exist. */
export async function removeContainer(ref: string, options: { force?: boolean } = { force: true }): Promise<boolean> {
  const args = ['rm', '--volumes', ...(options.force ? ['--force'] : []), ref];
  const result = await docker(args, { allowFailure: true, timeoutMs: quick() });
  if (result.exitCode === 0) return true;
  if (/no such container/i.test(result.stderr)) return false;
  throw connectionError('command-failed', args, result);
}

/** Freezes every process of a container (nothing in it runs until unpause). */
export async function pauseContainer(ref: string): Promise<void> {
  await docker(['pause', ref], { timeoutMs: quick() });
}

export async function unpauseContainer(ref: string): Promise<void> {
  await docker(['unpause', ref], { timeoutMs: quick() });
}

export async function startContainer(ref: string): Promise<void> {
  await docker(['start', ref], { timeoutMs: quick() });
}

export async function commitContainer(ref: string, tag: string, changes: string[] = []): Promise<string> {
  const args = ['commit'];
  for (const change of changes) args.push('--change', change);
  args.push(ref, tag);
  return (await docker(args, { timeoutMs: config.timeouts.buildMs })).stdout.trim();
}

// ---- volumes ------------------------------------------------------------------------------

export interface VolumeInfo {
  Name: string;
  Labels: Record<string, string> | null;
}

export async function createVolume(name: string, labels: Record<string, string>): Promise<void> {
  await docker(['volume', 'create', ...labelArgs(labels), name], { timeoutMs: quick() });
}

export async function inspectVolume(name: string): Promise<VolumeInfo | undefined> {
  const args = ['volume', 'inspect', '--format', '{{json .}}', name];
  const result = await docker(args, { allowFailure: true, timeoutMs: quick() });
  if (result.exitCode !== 0) {
    if (/no such volume/i.test(result.stderr)) return undefined;
    throw connectionError('command-failed', args, result);
  }
  return parseDockerJson<VolumeInfo>(args, result);
}

/** Volumes carrying every given label. */
export async function listVolumes(options: { labels: Record<string, string> }): Promise<VolumeInfo[]> {
  const args = ['volume', 'ls', '--format', '{{json .}}'];
  for (const [key, value] of Object.entries(options.labels)) args.push('--filter', `label=${key}=${value}`);
  const result = await docker(args, { timeoutMs: quick() });
  const names = result.stdout.split('\n').filter((line) => line.startsWith('{')).map((line) => parseDockerJson<{ Name: string }>(args, { ...result, stdout: line }).Name);
  const volumes: VolumeInfo[] = [];
  for (const name of names) {
    const info = await inspectVolume(name);
    if (info) volumes.push(info);
  }
  return volumes;
}

/** Removes a volume; false when it did not exist. */
export async function removeVolume(name: string): Promise<boolean> {
  const args = ['volume', 'rm', name];
  const result = await docker(args, { allowFailure: true, timeoutMs: quick() });
  if (result.exitCode === 0) return true;
  if (/no such volume/i.test(result.stderr)) return false;
  throw connectionError('command-failed', args, result);
}

// ---- engine -------------------------------------------------------------------------------

/** The CLI's own version from `docker --version`; does not contact the daemon. */
export async function dockerClientVersion(timeoutMs = quick()): Promise<string> {
  const result = await docker(['--version'], { timeoutMs });
  return /version\s+([^\s,]+)/i.exec(result.stdout)?.[1] ?? result.stdout.trim();
}

export interface ServerVersion {
  Version: string;
  ApiVersion: string;
  Os?: string;
  Arch?: string;
}

/** The daemon's version; a daemon that cannot be reached throws a DockerError whose kind says why. */
export async function dockerServerVersion(timeoutMs = quick()): Promise<ServerVersion> {
  const args = ['version', '--format', '{{json .Server}}'];
  return parseDockerJson<ServerVersion>(args, await docker(args, { timeoutMs }));
}
