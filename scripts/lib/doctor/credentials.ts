// Credential checks: when the baked token expires, and whether the host login moved on since
// the image was built. Only dates and kinds are ever read out; never a token.
import { execa } from 'execa';
import fs from 'fs-extra';
import { labels, temporaryLabels } from '../config.ts';
import { KEYCHAIN_SERVICE, subscriptionPlaces } from '../image/credentials.ts';
import type { Engine } from '../engine/engine.ts';
import { childEnv } from '../exec.ts';
import { deadlines, makeImageCommand, type DoctorContext } from './context.ts';
import { describeCredentialsSource } from './image.ts';
import { ok, skip, warn, type Check, type Finding } from './runner.ts';
import { parseDate, relative } from './time.ts';

/** A setup-token this close to its (estimated) end deserves a warning. */
export const SETUP_TOKEN_WARN_MS = 30 * 24 * 3600_000;

export interface BakedCredentials {
  source?: string;
  expiresAt?: number;
  estimated: boolean;
}

// Prints only "kind=..." and "expiresAt=<digits>" lines: the token never leaves the container.
const FACTS_SCRIPT = [
  'dir="${CLAUDE_CONFIG_DIR:-$HOME/.claude}"',
  'if [ -f "$dir/.credentials.json" ]; then echo kind=subscription;',
  '  sed -n \'s/.*"expiresAt"[[:space:]]*:[[:space:]]*\\([0-9][0-9]*\\).*/expiresAt=\\1/p\' "$dir/.credentials.json" | head -n 1; fi',
  'if grep -qs CLAUDE_CODE_OAUTH_TOKEN "$dir/settings.json"; then echo kind=oauth-token; fi',
  'if grep -qs ANTHROPIC_API_KEY "$dir/settings.json"; then echo kind=api-key; fi',
].join('\n');

export function parseFacts(stdout: string): BakedCredentials {
  const facts: BakedCredentials = { estimated: false };
  for (const line of stdout.split('\n')) {
    const kind = /^kind=(subscription|oauth-token|api-key)$/.exec(line.trim())?.[1];
    if (kind && !facts.source) facts.source = kind;
    const expires = /^expiresAt=(\d{1,16})$/.exec(line.trim())?.[1];
    if (expires && facts.expiresAt === undefined) facts.expiresAt = Number(expires);
  }
  return facts;
}

/** For images without credential labels (e.g. made by hand): look inside, without network. */
async function factsInsideImage(engine: Engine, image: string): Promise<BakedCredentials> {
  const spec = { image, labels: temporaryLabels('doctor'), network: 'none', remove: true, entrypoint: '/bin/sh', command: ['-c', FACTS_SCRIPT] };
  return parseFacts((await engine.run(spec, { timeoutMs: deadlines.containerMs })).stdout);
}

export async function bakedCredentials(context: DoctorContext): Promise<BakedCredentials> {
  const l = (await context.imageInfo())?.Config.Labels ?? {};
  if (l[labels.credentialsSource]) {
    return {
      source: l[labels.credentialsSource],
      expiresAt: parseDate(l[labels.credentialsExpiresAt]),
      estimated: l[`${labels.credentialsExpiresAt}-estimated`] === 'true',
    };
  }
  return factsInsideImage(context.engine, context.image);
}

export function expiryFinding(baked: BakedCredentials, now: number, rebuild: string): Finding {
  if (!baked.source) return skip('no credentials found inside the image');
  if (baked.source === 'api-key') return ok('an API key: it does not expire');
  if (baked.expiresAt === undefined) return ok(`${describeCredentialsSource(baked.source)} with no recorded expiry`);
  const iso = new Date(baked.expiresAt).toISOString();
  const at = `${iso} (${relative(baked.expiresAt, now)})`;
  if (baked.source === 'oauth-token' || baked.estimated) {
    const tokenFix = `run claude setup-token, save the new token to a file, then ${rebuild} TOKEN_FILE=<file>`;
    if (baked.expiresAt <= now) return warn(`the setup-token expired around ${at}, estimated as its file date + 1 year`, tokenFix);
    if (baked.expiresAt - now < SETUP_TOKEN_WARN_MS) return warn(`the setup-token expires around ${at}, estimated as its file date + 1 year`, tokenFix);
    return ok(`the setup-token is valid until about ${at}`);
  }
  if (baked.expiresAt <= now) {
    return warn(
      `the baked access token expired ${relative(baked.expiresAt, now)} (${iso}): claude in a container will try to refresh it, and as refresh tokens are single use that can log the host out`,
      `run claude on the host so it refreshes its login, then ${rebuild}; or bake a setup-token instead (claude setup-token, then ${rebuild} TOKEN_FILE=<file>)`,
    );
  }
  return ok(`the baked access token is valid until ${at}`);
}

export interface HostLogin {
  place: string;
  changedAt: number;
}

/** macOS: the Keychain item's modification date ("mdat"); its attributes only, never the password. */
async function keychainChangedAt(env: NodeJS.ProcessEnv): Promise<number | undefined> {
  const result = await execa('security', ['find-generic-password', '-s', KEYCHAIN_SERVICE], {
    env: childEnv(env as Record<string, string | undefined>),
    extendEnv: false,
    reject: false,
    timeout: deadlines.localMs,
    stdin: 'ignore',
  });
  // Exit 44: no such item. Any failure means "not in the Keychain"; the file is tried next.
  if (result.exitCode !== 0) return undefined;
  const stamp = /"mdat"<timedate>=\S*\s+"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z/.exec(String(result.stdout));
  if (!stamp) return undefined;
  const [, y, mo, d, h, mi, s] = stamp;
  return Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
}

export async function hostLogin(context: Pick<DoctorContext, 'home' | 'env' | 'platform'>): Promise<HostLogin | undefined> {
  const { places, credentialsFile } = subscriptionPlaces(context.home, context.env, context.platform);
  if (context.platform === 'darwin') {
    const changedAt = await keychainChangedAt(context.env);
    if (changedAt !== undefined) return { place: places[0], changedAt };
  }
  try {
    return { place: credentialsFile, changedAt: (await fs.stat(credentialsFile)).mtimeMs };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

export const credentialChecks: Check<DoctorContext>[] = [
  {
    id: 'credentials-expiry',
    needs: ['image'],
    get deadlineMs() {
      return deadlines.containerMs;
    },
    run: async (context) => expiryFinding(await bakedCredentials(context), context.now(), makeImageCommand(context)),
  },
  {
    id: 'host-login-newer',
    needs: ['image'],
    get deadlineMs() {
      return deadlines.localMs;
    },
    timeoutFix: 'the macOS Keychain did not answer: unlock it (security unlock-keychain), then run again',
    run: async (context) => {
      const l = (await context.imageInfo())?.Config.Labels ?? {};
      const source = l[labels.credentialsSource];
      if (!source) return skip('the image does not record where its credentials came from');
      if (source !== 'subscription') return ok(`the image holds ${describeCredentialsSource(source)}: the host login does not affect it`);
      const builtAt = parseDate(l[labels.builtAt]);
      if (builtAt === undefined) return skip(`the image has no ${labels.builtAt} label`);
      const host = await hostLogin(context);
      const now = context.now();
      if (!host) {
        return skip(`no host login found (looked at ${subscriptionPlaces(context.home, context.env, context.platform).places.join('; ')})`);
      }
      if (host.changedAt > builtAt) {
        return warn(
          `the host login (${host.place}) changed ${relative(host.changedAt, now)}, after the image was built ${relative(builtAt, now)}: the image holds an older login, whose refresh token the host may have used up`,
          makeImageCommand(context),
        );
      }
      return ok(`the image was built after the host login last changed (${relative(host.changedAt, now)})`);
    },
  },
];
