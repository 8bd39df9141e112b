// What the checks share: the inputs, deadlines, and probes run at most once per doctor run.
import { makeCommand } from '../cli.ts';
import os from 'node:os';
import { imageAuthStatus, type AuthStatus } from '../image/auth-status.ts';
import { config } from '../config.ts';
import { shellEngine, type Engine, type ImageInfo } from '../engine/engine.ts';
import { ParaError } from '../errors.ts';
import { findRepo, type RepoInfo } from '../git.ts';

export interface DoctorOptions {
  image?: string;
  /** Make one real request with the image's credentials (--online). */
  online?: boolean;
  /** The network the online check's proxy reaches out through (null: docker's own). */
  egressNetwork?: string | null;
  cwd?: string;
  platform?: NodeJS.Platform;
  env?: NodeJS.ProcessEnv;
  home?: string;
  now?: () => number;
  /** The engine images are checked on; absent: the one the shell names. */
  engine?: Engine;
}

export interface DoctorContext {
  /** The engine the image checks run on (the shell's: where make image builds). */
  engine: Engine;
  image: string;
  online: boolean;
  egressNetwork: string | null;
  /** True when the image was named with --image (the fix then names it too). */
  imageExplicit: boolean;
  cwd: string;
  platform: NodeJS.Platform;
  env: NodeJS.ProcessEnv;
  home: string;
  now: () => number;
  imageInfo: () => Promise<ImageInfo | undefined>;
  /** `claude auth status` inside the image; undefined when the image does not exist. */
  authStatus: () => Promise<AuthStatus | undefined>;
  /** undefined outside a git repository. */
  repo: () => Promise<RepoInfo | undefined>;
}

// A doctor must answer fast: the general timeouts apply, but never longer than these.
// Read when a check runs, so a bad setting is a usage error, not a crash at load.
export const deadlines = {
  localMs: 5_000,
  get dockerMs() {
    return Math.min(config.timeouts.dockerQuickMs, 10_000);
  },
  get containerMs() {
    return Math.min(config.timeouts.verifyMs, 30_000);
  },
};

function once<T>(probe: () => Promise<T>): () => Promise<T> {
  let promise: Promise<T> | undefined;
  return () => (promise ??= probe());
}

export function createContext(options: DoctorOptions = {}): DoctorContext {
  const image = options.image || config.authenticatedImage;
  const cwd = options.cwd ?? process.cwd();
  const engine = options.engine ?? shellEngine;
  const imageInfo = once(() => engine.inspectImage(image));
  return {
    engine,
    image,
    online: Boolean(options.online),
    egressNetwork: options.egressNetwork ?? null,
    imageExplicit: Boolean(options.image),
    cwd,
    platform: options.platform ?? process.platform,
    env: options.env ?? process.env,
    home: options.home ?? os.homedir(),
    now: options.now ?? Date.now,
    imageInfo,
    authStatus: once(async () => ((await imageInfo()) ? imageAuthStatus(engine, image, deadlines.containerMs) : undefined)),
    repo: once(async () => {
      try {
        return await findRepo(cwd);
      } catch (error) {
        if (error instanceof ParaError && error.code === 'not-a-repo') return undefined;
        throw error;
      }
    }),
  };
}

/** The make command that rebuilds the image being checked. */
export function makeImageCommand(context: DoctorContext): string {
  return context.imageExplicit && context.image !== config.authenticatedImage ? makeCommand('image', { TAG: context.image }) : makeCommand('image');
}
