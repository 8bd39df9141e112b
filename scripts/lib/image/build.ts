// Builds para-claude and para-authenticated: stage, build under a temporary tag, verify
// inside the image with the real claude CLI, and only then move the tag.
import { randomBytes } from 'node:crypto';
import fs from 'fs-extra';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertLoggedIn, imageAuthStatus, type AuthStatus } from './auth-status.ts';
import { config, labels, MANAGED_BY } from '../config.ts';
import type { Credentials } from './credentials.ts';
import type { Engine } from '../engine/engine.ts';
import { DockerError } from '../engine/docker.ts';
import type { ImageInfo } from '../engine/engine.ts';
import { ParaError } from '../errors.ts';
import { onInterrupt } from '../cleanup.ts';
import { claudePackageName, fetchClaudePackage } from './claude-package.ts';
import { machineId } from './sweep.ts';
import { tarArchive } from '../tar.ts';
import { stageProgram, withStagingDir } from './staging.ts';

/** The project folder: the nearest parent holding docker/Dockerfile (works from scripts/lib and from dist/). */
export const PROJECT_ROOT = findProjectRoot(path.dirname(fileURLToPath(import.meta.url)));

function findProjectRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, config.dockerfile))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(start, '..', '..');
  }
}

export interface HostIds {
  uid: number;
  gid: number;
}

/** The image user's IDs: the host user's, except that root maps to an unprivileged user. */
export function imageUserIds(uid = process.getuid?.() ?? config.rootHostUid, gid = process.getgid?.() ?? config.rootHostGid): HostIds {
  if (uid === 0) return { uid: config.rootHostUid, gid: config.rootHostGid };
  return { uid, gid };
}

export interface ClaudeImageOptions {
  claudeImage: string;
  baseImage: string;
  /** True when the user named the base image explicitly (a mismatch then forces a rebuild). */
  baseImageExplicit: boolean;
  claudeBinary?: string;
  /** A pinned claude CLI version for the npm route (default: the latest). */
  claudeVersion?: string;
  rebuild: boolean;
  ids: HostIds;
  stream: boolean;
}

async function claudeSource(engine: Engine, options: ClaudeImageOptions): Promise<string> {
  if (options.claudeBinary) {
    const stat = await fs.stat(options.claudeBinary);
    return `binary:${stat.size}:${Math.floor(stat.mtimeMs)}`;
  }
  // A pinned version names its package (which depends on the base image); "latest" is resolved when fetched.
  if (!options.claudeVersion || options.claudeVersion === 'latest') return 'npm';
  await ensureBaseImagePresent(engine, options.baseImage, options.stream);
  return `npm:${await claudePackageName(engine, options.baseImage)}@${options.claudeVersion}`;
}

function whyRebuild(info: ImageInfo | undefined, options: ClaudeImageOptions, source: string): string | undefined {
  if (!info) return `${options.claudeImage} does not exist yet`;
  if (options.rebuild) return '--rebuild-base was given';
  const l = info.Config.Labels ?? {};
  if (l[labels.uid] !== String(options.ids.uid) || l[labels.gid] !== String(options.ids.gid)) return 'its user does not match your UID/GID';
  if (options.baseImageExplicit && l[labels.baseImage] !== options.baseImage) return `it was built from ${l[labels.baseImage] ?? 'another base image'}`;
  if (options.claudeBinary && l[labels.claudeSource] !== source) return 'a different claude binary was given';
  if (source.startsWith('npm:') && l[labels.claudeSource] !== source) return `claude ${options.claudeVersion} was asked for`;
  return undefined;
}

async function ensureBaseImagePresent(engine: Engine, baseImage: string, stream: boolean): Promise<void> {
  if (await engine.inspectImage(baseImage)) return;
  const args = ['pull', baseImage];
  const result = await engine.docker(args, { allowFailure: true, stream, timeoutMs: config.timeouts.buildMs });
  if (result.exitCode !== 0) {
    throw new DockerError(
      'command-failed',
      `the base image ${baseImage} is not present and cannot be pulled: ${result.stderr.trim().split('\n').pop() ?? ''}`,
      {
        args,
        ...result,
        hint: 'check your network and registry login (docker pull ' + baseImage + '), or pass a local image: make image BASE_IMAGE=<image>',
      },
    );
  }
}

/** Builds para-claude when it is missing or stale; returns whether it was built. */
export async function ensureClaudeImage(engine: Engine, options: ClaudeImageOptions, log: (line: string) => void): Promise<boolean> {
  if (options.claudeBinary && !(await fs.pathExists(options.claudeBinary))) {
    throw new ParaError(`the claude binary ${options.claudeBinary} does not exist`, {
      code: 'usage',
      exitCode: 2,
      hint: 'pass the path of a Linux claude binary, e.g. node_modules/@anthropic-ai/claude-code/bin/claude.exe',
    });
  }
  let source = await claudeSource(engine, options);
  const reason = whyRebuild(await engine.inspectImage(options.claudeImage), options, source);
  if (!reason) return false;
  log(`building ${options.claudeImage} from ${options.baseImage} (${reason})`);
  await ensureBaseImagePresent(engine, options.baseImage, options.stream);
  await withStagingDir(async (dir) => {
    const context = path.join(dir, 'context');
    await fs.mkdir(path.join(context, 'claude-bin'), { recursive: true, mode: 0o700 });
    let binary = options.claudeBinary ? path.resolve(options.claudeBinary) : undefined;
    if (!binary) {
      const name = await claudePackageName(engine, options.baseImage);
      log(`fetching ${name}@${options.claudeVersion ?? 'latest'} with npm`);
      const fetched = await fetchClaudePackage(name, options.claudeVersion ?? 'latest', path.join(dir, 'npm'));
      binary = fetched.file;
      source = `npm:${fetched.spec}`;
    }
    await stageProgram(binary, path.join(context, 'claude-bin', 'claude'));
    await engine
      .buildImage({
        dockerfile: path.join(PROJECT_ROOT, config.dockerfile),
        context,
        tag: options.claudeImage,
        stream: options.stream,
        buildArgs: { BASE_IMAGE: options.baseImage, PARA_UID: String(options.ids.uid), PARA_GID: String(options.ids.gid) },
        labels: {
          [labels.managedBy]: MANAGED_BY,
          [labels.baseImage]: options.baseImage,
          [labels.uid]: String(options.ids.uid),
          [labels.gid]: String(options.ids.gid),
          [labels.claudeSource]: source,
          [labels.builtAt]: new Date().toISOString(),
        },
      })
      .catch((error: unknown) => {
        if (error instanceof DockerError && error.kind === 'command-failed') {
          throw new ParaError(`building ${options.claudeImage} failed`, {
            code: 'build-failed',
            cause: error,
            hint: 'read the build output above; make image REBUILD_BASE=1 retries from scratch',
          });
        }
        throw error;
      });
  });
  return true;
}

/** Labels for an authenticated image: facts only, never a secret. */
export function authenticatedLabels(
  credentials: Pick<Credentials, 'kind' | 'authMethod' | 'expiresAt' | 'expiryEstimated' | 'subscriptionType' | 'account'>,
  claudeImage: ImageInfo | undefined,
): Record<string, string> {
  const out: Record<string, string> = {
    [labels.managedBy]: MANAGED_BY,
    [labels.builtAt]: new Date().toISOString(),
    [labels.authMethod]: credentials.authMethod,
    [labels.credentialsSource]: credentials.kind,
  };
  const base = claudeImage?.Config.Labels?.[labels.baseImage];
  if (base) out[labels.baseImage] = base;
  for (const key of [labels.uid, labels.gid]) {
    const value = claudeImage?.Config.Labels?.[key];
    if (value) out[key] = value;
  }
  if (credentials.expiresAt !== undefined) {
    out[labels.credentialsExpiresAt] = new Date(credentials.expiresAt).toISOString();
    if (credentials.expiryEstimated) out[`${labels.credentialsExpiresAt}-estimated`] = 'true';
  }
  if (credentials.subscriptionType) out[labels.subscriptionType] = credentials.subscriptionType;
  if (credentials.account) out[labels.credentialsAccount] = credentials.account;
  return out;
}

/** A tag for an image not yet verified; it names the process that made it, for the sweep. */
export function temporaryTag(): string {
  return `para-build-tmp:${process.pid}-${randomBytes(6).toString('hex')}`;
}

/**
 * Moves `tag` to the verified temporary image, then drops the temporary tag and the image the
 * tag used to name, when nothing else uses it (an old credentials layer should not linger).
 */
export async function promoteImage(engine: Engine, temporary: string, tag: string): Promise<string> {
  const previous = await engine.inspectImage(tag);
  await engine.tagImage(temporary, tag);
  await engine.removeImage(temporary);
  const current = await engine.inspectImage(tag);
  if (previous && current && previous.Id !== current.Id) {
    const result = await engine.docker(['image', 'rm', previous.Id], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
    // A conflict means a container or another tag still uses it: then it stays, as it must.
    if (result.exitCode !== 0 && !/conflict|being used|is referenced|dependent child/i.test(result.stderr)) {
      throw new DockerError('command-failed', `could not remove the previous image ${previous.Id}`, { args: ['image', 'rm', previous.Id], ...result });
    }
  }
  return current?.Id ?? '';
}

export interface AuthenticatedBuild {
  tag: string;
  imageId: string;
  status: AuthStatus;
  labels: Record<string, string>;
}

/** A LABEL instruction for docker commit --change, its value quoted. */
function labelChange(key: string, value: string): string {
  return `LABEL ${key}=${JSON.stringify(value)}`;
}

/** The agent user's UID/GID in an image, from para-claude's labels, else from the image itself. */
async function imageUser(engine: Engine, info: ImageInfo | undefined, image: string): Promise<{ uid: number; gid: number }> {
  const l = info?.Config.Labels ?? {};
  if (/^\d+$/.test(l[labels.uid] ?? '') && /^\d+$/.test(l[labels.gid] ?? '')) return { uid: Number(l[labels.uid]), gid: Number(l[labels.gid]) };
  const result = await engine.docker(['run', '--rm', '--network', 'none', '--entrypoint', 'id', image, config.containerUser], {
    timeoutMs: config.timeouts.verifyMs,
  });
  const uid = /uid=(\d+)/.exec(result.stdout)?.[1];
  const gid = /gid=(\d+)/.exec(result.stdout)?.[1];
  if (!uid || !gid)
    throw new ParaError(`${image} has no user ${config.containerUser}`, { code: 'image-user-missing', hint: 'rebuild it: make image REBUILD_BASE=1' });
  return { uid: Number(uid), gid: Number(gid) };
}

/**
 * The credentials layer, made without docker build: a container created (never started) from
 * para-claude receives the files as a tar on standard input (docker cp --archive: the agent's
 * owner and mode 0600 kept), and is committed as one new layer. No build context, build cache or
 * intermediate image ever holds a secret; the container and the unverified tag carry this
 * process as owner, so a killed run's leftovers are removed by the next (sweep.ts).
 */
/** para-build-<machine>-<pid>-<random>: the sweep removes it once that process is gone. */
export function buildContainerName(): string {
  return `para-build-${machineId()}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

export interface HomeLayer {
  claudeImage: string;
  claudeInfo: ImageInfo;
  /** The unverified image to make (a temporaryTag()). */
  tag: string;
  labels: Record<string, string>;
  /** A tar to extract at `into` in a container of claudeImage (or several, one after another). */
  archive: Buffer | Buffer[];
  /** The image's user and command to restore (default: claudeInfo's). */
  runAs?: { user: string; cmd: string[] };
  into: string;
  /** What to give to the agent's user after the extraction. */
  chown: string[];
}

/**
 * Files into a new top layer of para-claude, without docker build: a container created as root
 * (never started with anything but a chown) receives them as a tar on docker cp's standard input,
 * the chown gives them to the agent's user, and docker commit makes the layer, restoring the
 * image's user and command. The container carries this process as owner (sweep.ts).
 */
export async function commitHomeLayer(engine: Engine, layer: HomeLayer): Promise<void> {
  const owner = await imageUser(engine, layer.claudeInfo, layer.claudeImage);
  let container: string | undefined;
  const remove = async () => {
    if (container) await engine.docker(['rm', '--force', '--volumes', container], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
  };
  const stopListening = onInterrupt(remove);
  try {
    // No labels of its own: docker commit would copy them into the image for good. It carries
    // para-claude's (managed-by para) and a name that says which machine and process made it.
    const createArgs = ['create', '--name', buildContainerName(), '--network', 'none', '--user', '0:0'];
    createArgs.push(layer.claudeImage, 'chown', '-R', `${owner.uid}:${owner.gid}`, ...layer.chown);
    container = (await engine.docker(createArgs, { timeoutMs: config.timeouts.dockerQuickMs })).stdout.trim();
    for (const archive of Array.isArray(layer.archive) ? layer.archive : [layer.archive])
      await engine.docker(['cp', '-', `${container}:${layer.into}`], { input: archive, timeoutMs: config.timeouts.dockerQuickMs });
    await engine.docker(['start', '--attach', container], { timeoutMs: config.timeouts.verifyMs });
    const changes = [
      `USER ${layer.runAs?.user ?? (layer.claudeInfo.Config.User || config.containerUser)}`,
      `CMD ${JSON.stringify(layer.runAs?.cmd ?? layer.claudeInfo.Config.Cmd ?? ['claude'])}`,
      ...Object.entries(layer.labels).map(([key, value]) => labelChange(key, value)),
    ];
    await engine.commitContainer(container, layer.tag, changes);
  } finally {
    await remove();
    stopListening();
  }
}

/** The credential files as a tar relative to the home folder (folders 0700, files 0600). */
function credentialsArchive(files: Credentials['files']): Buffer {
  const folders = new Set<string>();
  for (const file of files) {
    const parts = file.path.split('/').slice(0, -1);
    for (let i = 1; i <= parts.length; i += 1) folders.add(`${parts.slice(0, i).join('/')}/`);
  }
  return tarArchive(
    [
      ...[...folders].sort().map((folder) => ({ path: folder, mode: 0o700 })),
      ...files.map((file) => ({ path: file.path, mode: 0o600, content: file.content })),
    ],
    { uid: 0, gid: 0 },
  );
}

/**
 * para-claude plus the credentials (commitHomeLayer): no build context, build cache or
 * intermediate image ever holds them. Verified under a temporary tag before the tag moves.
 */
export async function buildAuthenticatedImage(
  engine: Engine,
  options: {
    tag: string;
    claudeImage: string;
    credentials: Credentials;
    stream: boolean;
    /** Checked before the tag moves, on the unverified image (the online check). */
    verify?: (image: string) => Promise<void>;
  },
): Promise<AuthenticatedBuild> {
  const claudeInfo = await engine.inspectImage(options.claudeImage);
  if (!claudeInfo) throw new ParaError(`the image ${options.claudeImage} does not exist`, { code: 'image-missing', hint: 'run: make image' });
  const imageLabels = authenticatedLabels(options.credentials, claudeInfo);
  const temporary = temporaryTag();
  const stopListening = onInterrupt(() => engine.removeImage(temporary, { force: true }).catch(() => undefined));
  try {
    const tops = [...new Set(options.credentials.files.map((file) => file.path.split('/')[0]))].map((top) => `${config.containerHome}/${top}`);
    await commitHomeLayer(engine, {
      claudeImage: options.claudeImage,
      claudeInfo,
      tag: temporary,
      labels: imageLabels,
      archive: credentialsArchive(options.credentials.files),
      into: config.containerHome,
      chown: tops,
    });
    const status = await imageAuthStatus(engine, temporary);
    assertLoggedIn(status, options.credentials.authMethod, options.tag);
    await options.verify?.(temporary);
    const imageId = await promoteImage(engine, temporary, options.tag);
    return { tag: options.tag, imageId, status, labels: imageLabels };
  } finally {
    // Already gone after a promotion; after a failure this drops the unverified image.
    await engine.removeImage(temporary, { force: true }).catch(() => undefined);
    stopListening();
  }
}
