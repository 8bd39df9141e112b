// The one wrapper around the docker CLI: every docker call in the project goes through docker(),
// and the engine it goes to is named by its options (engine.ts builds the verbs on top of it).
import { execa, type ResultPromise } from 'execa';
import { createWriteStream, type WriteStream } from 'node:fs';
import { ParaError } from '../errors.ts';
import { childEnv } from '../exec.ts';
import { targetEnv, type EngineTarget } from './target.ts';
import { traced } from '../trace.ts';

export type DockerFailure =
  | 'not-installed'
  | 'daemon-down'
  | 'permission-denied'
  | 'host-unreachable'
  | 'context-missing'
  | 'pull-failed'
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

  constructor(
    kind: DockerFailure,
    message: string,
    details: { args: string[]; stdout?: string; stderr?: string; exitCode?: number; hint?: string; cause?: unknown },
  ) {
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
  input?: string | Buffer;
  /** A file to stream to the command's standard input (a git bundle). */
  inputFile?: string;
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
  /** With stdoutFile: stop the command once it has written this much (data an agent controls). */
  maxStdoutBytes?: number;
  /** Return non-zero exits instead of throwing (connection failures still throw). */
  allowFailure?: boolean;
  env?: Record<string, string | undefined>;
  /** The engine to talk to; absent: the one the shell's DOCKER_CONTEXT / DOCKER_HOST name. */
  target?: EngineTarget;
}

function dockerHostDescription(env: Record<string, string>): string | undefined {
  if (env.DOCKER_HOST) return `DOCKER_HOST=${env.DOCKER_HOST}`;
  if (env.DOCKER_CONTEXT) return `DOCKER_CONTEXT=${env.DOCKER_CONTEXT}`;
  return undefined;
}

// A context the CLI cannot load fails every command before anything is sent to a daemon.
// Old CLIs: `context "x" does not exist`; newer: `...unable to resolve docker endpoint: context "x": context not found: ...`.
const CONTEXT_MISSING = /context "([^"]*)"(?: does not exist|: context not found)/;
const PERMISSION_DENIED = /permission denied while trying to connect to the docker (?:daemon|api)/i;
// Only the CLI's own words for "nothing answered"; a bare `dial tcp` also appears in registry errors the daemon relays.
const CANNOT_CONNECT = /Cannot connect to the Docker daemon|error during connect|failed to connect to the docker API/i;
// The daemon answered, so whatever else the text says (a registry's `dial tcp ... no such host`) is not about reaching it.
const DAEMON_ANSWERED = /Error response from daemon/i;

/** Recognises the failures that mean "docker itself is unusable", whatever the command. */
export function classifyConnectionFailure(stderr: string, env: Record<string, string> = childEnv()): DockerFailure | undefined {
  if (CONTEXT_MISSING.test(stderr)) return 'context-missing';
  if (PERMISSION_DENIED.test(stderr)) return 'permission-denied';
  if (DAEMON_ANSWERED.test(stderr) || !CANNOT_CONNECT.test(stderr)) return undefined;
  if (dockerHostDescription(env) || /\btcp:\/\/|ssh:\/\//i.test(stderr)) return 'host-unreachable';
  return 'daemon-down';
}

/** The docker verb of a command line: `run`, `pull`, `create`, also from `container run` / `image pull`. */
function dockerVerb(args: string[]): string | undefined {
  const [first, second] = args;
  return first === 'container' || first === 'image' ? second : first;
}

// What a registry pull failure looks like once the daemon relays it.
const PULL_REFUSED = /pull access denied|repository does not exist|manifest unknown|manifest for \S+ not found|toomanyrequests|unauthorized: /i;
// `Get "https://registry.invalid/v2/": dial tcp: lookup ...: no such host`, `...: net/http: TLS handshake timeout`.
const REGISTRY_UNREACHABLE = /(?:Get|Head) "https?:\/\/[^"]+": /;

/**
 * Whether a failed run/create/pull failed because its image could not be pulled, read from the
 * daemon's last error line. `run` exits 125 for docker's own errors, so a container's own output
 * is never read as one.
 */
export function isPullFailure(args: string[], result: Pick<DockerResult, 'stderr' | 'exitCode'>): boolean {
  const verb = dockerVerb(args);
  if (result.exitCode === 0 || !DAEMON_ANSWERED.test(result.stderr)) return false;
  if (verb === 'pull') return true;
  if (verb === 'run' && result.exitCode !== 125) return false;
  if (verb !== 'run' && verb !== 'create') return false;
  const reason = daemonReason(result.stderr);
  return PULL_REFUSED.test(reason) || REGISTRY_UNREACHABLE.test(reason);
}

function pulledImage(args: string[], stderr: string): string | undefined {
  const named = /^Unable to find image '([^']+)' locally$/m.exec(stderr)?.[1] ?? /pull access denied for ([^\s,]+)/.exec(stderr)?.[1];
  if (named) return named;
  return dockerVerb(args) === 'pull' ? args[args.length - 1] : undefined;
}

/** The daemon's reason, without docker's "docker: " prefix and "Run 'docker run --help'" trailer. */
function daemonReason(stderr: string): string {
  // The last line the daemon sent: pull progress and earlier lines come before it.
  const lines = stderr
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !/^Run 'docker .* --help'/.test(line));
  const reason = [...lines].reverse().find((line) => DAEMON_ANSWERED.test(line)) ?? lines[lines.length - 1] ?? '';
  return reason.replace(/^docker: /, '').replace(/^Error response from daemon: /i, '');
}

export function pullError(args: string[], result: DockerResult): DockerError {
  const image = pulledImage(args, result.stderr);
  const reason = daemonReason(result.stderr);
  const unreachable = !PULL_REFUSED.test(reason) && REGISTRY_UNREACHABLE.test(reason);
  const hint = unreachable
    ? `no registry could be reached: build the image locally (para's own images: make image), or load it (docker load), or check the network/proxy, then run again${image ? ` (docker pull ${image})` : ''}`
    : `check the image name${image ? ` (${image})` : ''}; para's own images are built locally (make image), not pulled; a private image needs docker login`;
  const what = image ? `the image ${image} is not present locally and could not be pulled` : `docker ${dockerVerb(args)} could not pull its image`;
  return new DockerError('pull-failed', `${what}: ${reason}`, { args, ...result, hint });
}

export function connectionError(
  kind: DockerFailure,
  args: string[],
  result: Partial<DockerResult>,
  cause?: unknown,
  env: Record<string, string> = childEnv(),
): DockerError {
  const socket = /(?:unix|tcp|ssh):\/\/[^\s"]+/.exec(result.stderr ?? '')?.[0]?.replace(/[.,:;]+$/, '');
  switch (kind) {
    case 'context-missing': {
      const name = CONTEXT_MISSING.exec(result.stderr ?? '')?.[1] ?? env.DOCKER_CONTEXT ?? '';
      const fromEnv = env.DOCKER_CONTEXT === name;
      return new DockerError(kind, `the docker context "${name}"${fromEnv ? ' named by DOCKER_CONTEXT' : ' (the current docker context)'} does not exist`, {
        args,
        ...result,
        cause,
        hint: fromEnv
          ? 'run `docker context ls` to see the contexts, then unset DOCKER_CONTEXT or set it to one of them'
          : 'run `docker context ls` to see the contexts, then `docker context use default` (or one of them)',
      });
    }
    case 'not-installed':
      return new DockerError(kind, 'Docker is not installed: no `docker` command on PATH', {
        args,
        ...result,
        cause,
        hint:
          process.platform === 'darwin'
            ? 'install Docker Desktop (or colima) and make sure `docker info` works'
            : 'install Docker Engine (for example the docker.io package) and make sure `docker info` works',
      });
    case 'permission-denied':
      return new DockerError(kind, `permission denied on the Docker socket${socket ? ` ${socket}` : ''}`, {
        args,
        ...result,
        cause,
        hint: 'add your user to the docker group (sudo usermod -aG docker "$USER"), then log out and back in',
      });
    case 'host-unreachable':
      return new DockerError(
        kind,
        `the Docker daemon named by ${dockerHostDescription(env) ?? 'the current docker context'} does not answer${socket ? ` (${socket})` : ''}`,
        {
          args,
          ...result,
          cause,
          hint: 'unset DOCKER_HOST / DOCKER_CONTEXT, or run `docker context use default`, or start the daemon it names',
        },
      );
    case 'daemon-down':
      return new DockerError(kind, `the Docker daemon is not running${socket ? ` (nothing answers at ${socket})` : ''}`, {
        args,
        ...result,
        cause,
        hint: process.platform === 'darwin' ? 'start Docker Desktop, then run `docker info`' : 'start it (sudo systemctl start docker), then run `docker info`',
      });
    case 'timeout':
      return new DockerError(kind, `docker ${args[0] ?? ''} did not finish in time`, {
        args,
        ...result,
        cause,
        hint: 'check that the Docker daemon is healthy: docker info',
      });
    default:
      return new DockerError(kind, `docker ${args.slice(0, 2).join(' ')} failed: ${(result.stderr ?? '').trim() || `exit code ${result.exitCode}`}`, {
        args,
        ...result,
        cause,
      });
  }
}

export async function docker(args: string[], options: DockerOptions = {}): Promise<DockerResult> {
  return traced('docker', args, () => runDocker(args, options));
}

async function runDocker(args: string[], options: DockerOptions): Promise<DockerResult> {
  const env = childEnv({ ...targetEnv(options.target), ...options.env });
  let subprocess: ResultPromise;
  try {
    subprocess = execa('docker', args, {
      env,
      extendEnv: false,
      reject: false,
      input: options.input,
      inputFile: options.inputFile,
      timeout: options.timeoutMs,
      stdin: options.inheritStdio ? 'inherit' : options.input === undefined && options.inputFile === undefined ? 'ignore' : 'pipe',
      stdout: options.inheritStdio || options.stdoutInherit ? 'inherit' : options.stdoutFile && !options.maxStdoutBytes ? { file: options.stdoutFile } : 'pipe',
      stderr: options.inheritStdio ? 'inherit' : 'pipe',
      stripFinalNewline: false,
      // Output streamed elsewhere (a file, a callback) must not also pile up in memory (maxBuffer).
      buffer: options.onStdout || options.stdoutFile ? { stdout: false } : true,
    });
  } catch (error) {
    throw connectionError('command-failed', args, {}, error);
  }
  if (options.onStdout) subprocess.stdout?.on('data', options.onStdout);
  // A capped file: written here, and the command stopped at the cap (its data may be an agent's).
  let capped: { file: WriteStream; written: number; exceeded: boolean } | undefined;
  if (options.stdoutFile && options.maxStdoutBytes) {
    const limit = options.maxStdoutBytes;
    const state = { file: createWriteStream(options.stdoutFile, { mode: 0o600 }), written: 0, exceeded: false };
    capped = state;
    subprocess.stdout?.on('data', (chunk: Buffer) => {
      if (state.exceeded) return;
      state.written += chunk.length;
      if (state.written > limit) {
        state.exceeded = true;
        subprocess.kill('SIGKILL');
      } else state.file.write(chunk);
    });
  }
  if (options.stream && !options.inheritStdio) {
    subprocess.stdout?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    subprocess.stderr?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
  }
  const result = await subprocess;
  if (capped) {
    const file = capped.file;
    await new Promise<void>((resolve) => file.end(resolve));
    if (capped.exceeded) {
      throw new ParaError(`docker ${args[0]} wrote more than ${options.maxStdoutBytes} bytes and was stopped`, { code: 'output-too-large' });
    }
  }
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
    if (connection) throw connectionError(connection, args, out, undefined, env);
    // A run or create whose image cannot be pulled never ran: that is no answer to hand back.
    // `docker pull` itself with allowFailure returns, for callers with their own message.
    if (isPullFailure(args, out) && !(options.allowFailure && dockerVerb(args) === 'pull')) throw pullError(args, out);
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
