// make login: the user logs in inside a throwaway container; its home then becomes the
// authenticated image, checked with the real claude CLI in the container and in the image.
import { makeCommand } from '../cli.ts';
import { randomBytes } from 'node:crypto';
import fs from 'fs-extra';
import path from 'node:path';
import { assertLoggedIn, imageAuthStatus, readAuthStatus, type AuthStatus } from './auth-status.ts';
import { onInterrupt } from '../cleanup.ts';
import { config, labels, temporaryLabels } from '../config.ts';
import type { Engine } from '../engine/engine.ts';
import { labelArgs } from '../engine/spec.ts';
import { ParaError } from '../errors.ts';
import { authenticatedLabels, commitHomeLayer, promoteImage, temporaryTag } from './build.ts';
import { withStagingDir } from './staging.ts';

export const LOGIN_CONTAINER_PREFIX = 'para-login-';
export const LOGIN_TEMPORARY_LABEL = 'login';

/** Prints only the expiry and plan from the credentials file, never the tokens (grep -o). */
const FACTS_SCRIPT =
  'f="${CLAUDE_CONFIG_DIR:-$HOME/.claude}/.credentials.json"; [ -f "$f" ] || exit 0; ' +
  'grep -o \'"expiresAt"[[:space:]]*:[[:space:]]*[0-9]*\' "$f"; ' +
  'grep -o \'"subscriptionType"[[:space:]]*:[[:space:]]*"[A-Za-z0-9_-]*"\' "$f"; exit 0';

export interface LoginFacts {
  expiresAt?: number;
  subscriptionType?: string;
}

export interface LoginResult {
  tag: string;
  imageId: string;
  status: AuthStatus;
  facts: LoginFacts;
  labels: Record<string, string>;
}

export function loginContainerName(): string {
  return `${LOGIN_CONTAINER_PREFIX}${randomBytes(6).toString('hex')}`;
}

/** Refuses before anything is created: the login needs a person at a terminal. */
export function assertTerminal(stdin = Boolean(process.stdin.isTTY), stdout = Boolean(process.stdout.isTTY)): void {
  if (stdin && stdout) return;
  throw new ParaError(
    `${makeCommand('login')} needs a terminal: the claude login is interactive, but ${stdin ? 'standard output' : 'standard input'} is not a terminal`,
    {
      code: 'no-terminal',
      exitCode: 2,
      hint: `run ${makeCommand('login')} in a terminal; without one (CI, scripts) run \`claude setup-token\` once where a browser is available, save the token to a file, then ${makeCommand('image', { TOKEN_FILE: '<file>' })}`,
    },
  );
}

/**
 * Creates and starts a labelled container idling on `sleep`, runs fn with its name, and always
 * removes it: on success, on failure and on Ctrl-C/SIGTERM. `offline` is for tests: a real login
 * needs docker's default network (never the host's).
 */
export async function withLoginContainer<T>(
  engine: Engine,
  image: string,
  options: { name?: string; offline?: boolean },
  fn: (container: string) => Promise<T>,
): Promise<T> {
  const name = options.name ?? loginContainerName();
  const remove = () => engine.removeContainer(name);
  const release = onInterrupt(remove);
  try {
    const args = [
      'create',
      '--name',
      name,
      ...labelArgs(temporaryLabels(LOGIN_TEMPORARY_LABEL)),
      ...(options.offline ? ['--network', 'none'] : []),
      image,
      'sleep',
      'infinity',
    ];
    await engine.docker(args, { timeoutMs: config.timeouts.dockerQuickMs });
    await engine.startContainer(name);
    return await fn(name);
  } finally {
    release();
    await remove();
  }
}

/**
 * Gives the user's terminal to the login in the container; the verdict comes from auth status after.
 * `claude auth login` is /login without the REPL: no folder-trust dialog, and it ends by itself.
 */
export async function runInteractiveLogin(engine: Engine, container: string): Promise<void> {
  await engine.docker(['exec', '-it', '-e', 'TERM', '-w', config.containerHome, container, 'claude', 'auth', 'login'], {
    inheritStdio: true,
    allowFailure: true,
  });
}

export function containerAuthStatus(engine: Engine, container: string): Promise<AuthStatus> {
  return readAuthStatus(engine, ['exec', container, 'claude', 'auth', 'status'], 'the login container', config.claudeImage);
}

export function parseLoginFacts(stdout: string): LoginFacts {
  const expiresAt = /"expiresAt"\s*:\s*(\d+)/.exec(stdout)?.[1];
  const subscriptionType = /"subscriptionType"\s*:\s*"([A-Za-z0-9_-]+)"/.exec(stdout)?.[1];
  return { expiresAt: expiresAt === undefined ? undefined : Number(expiresAt), subscriptionType };
}

export async function readLoginFacts(engine: Engine, container: string): Promise<LoginFacts> {
  const result = await engine.docker(['exec', container, 'sh', '-c', FACTS_SCRIPT], { timeoutMs: config.timeouts.dockerQuickMs });
  return parseLoginFacts(result.stdout);
}

/** The login container's home, as para-claude's new top layer (commitHomeLayer), tagged `tag`. */
export async function buildFinalImage(engine: Engine, container: string, claudeImage: string, tag: string, imageLabels: Record<string, string>): Promise<void> {
  const claudeInfo = await engine.inspectImage(claudeImage);
  if (!claudeInfo) throw new ParaError(`the image ${claudeImage} does not exist`, { code: 'image-missing', hint: `run ${makeCommand('login')} again` });
  // Through a private staging folder (0700; a later run removes it if this one is killed).
  await withStagingDir(async (dir) => {
    const file = path.join(dir, 'home.tar');
    await engine.docker(['cp', `${container}:${config.containerHome}`, '-'], { stdoutFile: file, timeoutMs: config.timeouts.dockerQuickMs });
    await commitHomeLayer(engine, {
      claudeImage,
      claudeInfo,
      tag,
      labels: imageLabels,
      archive: await fs.readFile(file),
      into: path.posix.dirname(config.containerHome),
      chown: [config.containerHome],
    });
  });
}

/**
 * Verifies the login inside the container, commits it, rebuilds it as the authenticated image
 * under a temporary tag, verifies that image in a fresh container, and only then moves `tag`.
 * The container and the temporary tags are removed whatever happens.
 */
export async function commitLogin(
  engine: Engine,
  container: string,
  options: { tag: string; claudeImage: string; log?: (line: string) => void },
): Promise<LoginResult> {
  const log = options.log ?? (() => undefined);
  const candidate = temporaryTag();
  const cleanup = async () => {
    await engine.removeContainer(container);
    await engine.removeImage(candidate, { force: true });
  };
  const release = onInterrupt(cleanup);
  try {
    const status = await containerAuthStatus(engine, container);
    if (!status.loggedIn) {
      throw new ParaError(`the login did not complete: claude in the login container reports loggedIn=false, authMethod=${status.authMethod}`, {
        code: 'login-failed',
        hint: `run ${makeCommand('login')} again and finish the login (open the link, sign in, paste the code back); ${options.tag} was not changed`,
      });
    }
    const facts = await readLoginFacts(engine, container);
    const imageLabels = authenticatedLabels(
      {
        kind: 'subscription',
        authMethod: 'claude.ai',
        expiresAt: facts.expiresAt,
        subscriptionType: facts.subscriptionType ?? status.subscriptionType ?? undefined,
      },
      await engine.inspectImage(options.claudeImage),
    );
    // The login's own facts, which the host-credential kinds above cannot name.
    imageLabels[labels.authMethod] = status.authMethod;
    imageLabels[labels.credentialsSource] = 'login';

    log(`saving the login as ${options.tag}`);
    await buildFinalImage(engine, container, options.claudeImage, candidate, imageLabels);
    log(`verifying the login inside ${options.tag}`);
    const imageStatus = await imageAuthStatus(engine, candidate);
    assertLoggedIn(imageStatus, status.authMethod, options.tag);
    const imageId = await promoteImage(engine, candidate, options.tag);
    return { tag: options.tag, imageId, status: imageStatus, facts, labels: imageLabels };
  } finally {
    release();
    await cleanup();
  }
}
