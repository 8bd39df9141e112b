// Asks the real claude CLI inside an image whether it is logged in: the oracle for "authenticated".
import { makeCommand } from '../cli.ts';
import { config, temporaryLabels } from '../config.ts';
import { DockerError } from '../engine/docker.ts';
import { labelArgs } from '../engine/spec.ts';
import { ParaError } from '../errors.ts';
import type { Engine } from '../engine/engine.ts';

export interface AuthStatus {
  loggedIn: boolean;
  authMethod: string;
  subscriptionType?: string | null;
}

export function parseAuthStatus(stdout: string): AuthStatus | undefined {
  const start = stdout.indexOf('{');
  if (start === -1) return undefined;
  try {
    const data = JSON.parse(stdout.slice(start)) as Partial<AuthStatus>;
    if (typeof data.loggedIn !== 'boolean') return undefined;
    return { loggedIn: data.loggedIn, authMethod: String(data.authMethod ?? 'none'), subscriptionType: data.subscriptionType ?? null };
  } catch {
    return undefined;
  }
}

/**
 * Runs a docker command that ends in `claude auth status` and reads its JSON; `where` names the
 * image or container in the error, `image` the one whose claude CLI to check by hand.
 */
export async function readAuthStatus(engine: Engine, args: string[], where: string, image: string, timeoutMs = config.timeouts.verifyMs): Promise<AuthStatus> {
  const result = await engine.docker(args, { allowFailure: true, timeoutMs });
  const status = parseAuthStatus(result.stdout);
  if (!status) {
    throw new DockerError('command-failed', `could not read \`claude auth status\` in ${where} (exit code ${result.exitCode})`, {
      args,
      ...result,
      hint: `check that ${image} has a working claude CLI: docker run --rm ${image} claude --version`,
    });
  }
  return status;
}

/** Runs `claude auth status` in a throwaway container without network. */
export function imageAuthStatus(engine: Engine, image: string, timeoutMs = config.timeouts.verifyMs): Promise<AuthStatus> {
  const args = ['run', '--rm', '--network', 'none', ...labelArgs(temporaryLabels('auth-check')), image, 'claude', 'auth', 'status'];
  return readAuthStatus(engine, args, image, image, timeoutMs);
}

/** Throws unless the image reports logged in with the expected method. */
export function assertLoggedIn(status: AuthStatus, expectedMethod: string | undefined, image: string): void {
  if (status.loggedIn && (!expectedMethod || status.authMethod === expectedMethod)) return;
  const got = `loggedIn=${status.loggedIn}, authMethod=${status.authMethod}`;
  throw new ParaError(
    expectedMethod
      ? `verification failed: claude in ${image} reports ${got}, expected a login with ${expectedMethod}`
      : `verification failed: claude in ${image} reports ${got}`,
    {
      code: 'verification-failed',
      hint: `log in again on the host and run ${makeCommand('image')}, or run ${makeCommand('login')}; ${makeCommand('doctor')} shows details`,
    },
  );
}
