// Finds the Claude credentials to bake into an image, and turns them into the files the
// image's home needs. Secrets are read here and written only into the staging folder.
import { makeCommand } from '../cli.ts';
import { execa } from 'execa';
import { createHash } from 'node:crypto';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { ParaError } from '../errors.ts';
import { childEnv } from '../exec.ts';

export type CredentialKind = 'subscription' | 'oauth-token' | 'api-key';
export type AuthMethod = 'claude.ai' | 'oauth_token' | 'api_key';

export const KEYCHAIN_SERVICE = 'Claude Code-credentials';
/** A `claude setup-token` token is valid for one year from its creation. */
export const SETUP_TOKEN_LIFETIME_MS = 365 * 24 * 3600 * 1000;

export interface StagedFile {
  /** Path relative to the container user's home. */
  path: string;
  content: string;
}

export interface Credentials {
  kind: CredentialKind;
  /** What `claude auth status` must report inside the image. */
  authMethod: AuthMethod;
  /** Where they came from, for messages and labels (a path or the Keychain item; never content). */
  source: string;
  /** Access-token expiry in ms since the epoch, when known. */
  expiresAt?: number;
  /** True when expiresAt is an estimate (setup-token: file time + one year). */
  expiryEstimated?: boolean;
  subscriptionType?: string;
  /** When the source last changed (ms), to tell whether the host login is newer than an image. */
  sourceModifiedAt?: number;
  /** Which account a subscription login belongs to: a hash of ~/.claude.json's account id (no secret, no address). */
  account?: string;
  /** The value does not look like what it was given as (its shape only; never its text). */
  shapeWarning?: string;
  files: StagedFile[];
}

// The shapes claude setup-token and the console print; `claude auth status` accepts anything.
const SETUP_TOKEN_SHAPE = /^sk-ant-oat\d\d-[A-Za-z0-9_-]{20,}$/;
const API_KEY_SHAPE = /^sk-ant-api\d\d-[A-Za-z0-9_-]{20,}$/;

function shapeWarning(value: string, shape: RegExp, source: string, what: string, expected: string): string | undefined {
  if (shape.test(value)) return undefined;
  return `${source} does not look like ${what} (expected ${expected}, ${value.length} characters given): claude will report it as logged in, but every request would be refused`;
}

export interface DiscoverOptions {
  home?: string;
  env?: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  tokenFile?: string;
  apiKeyFile?: string;
  /** Reads standard input, for `--token-file -`. */
  readStdin?: () => Promise<string>;
  /** Time source for estimates, injectable for tests. */
  now?: () => number;
}

/** The keys of ~/.claude.json that belong in an image: onboarding and account, no project history. */
export const CLAUDE_JSON_KEYS = ['hasCompletedOnboarding', 'lastOnboardingVersion', 'oauthAccount', 'userID', 'theme', 'hasAvailableSubscription'] as const;

export function filterClaudeJson(raw: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    for (const key of CLAUDE_JSON_KEYS) {
      if (key in raw) out[key] = (raw as Record<string, unknown>)[key];
    }
  }
  out.hasCompletedOnboarding = true;
  return out;
}

/**
 * A subscription login's account, as a fingerprint: the first 16 hex digits of a SHA-256 of
 * oauthAccount.accountUuid in ~/.claude.json. It tells whether two logins are one account's
 * without naming it.
 */
export function accountFingerprint(claudeJson: Record<string, unknown>): string | undefined {
  const account = claudeJson.oauthAccount as { accountUuid?: unknown } | undefined;
  const id = account && typeof account === 'object' ? account.accountUuid : undefined;
  return typeof id === 'string' && id ? createHash('sha256').update(id).digest('hex').slice(0, 16) : undefined;
}

export function configDir(home: string, env: NodeJS.ProcessEnv): string {
  return env.CLAUDE_CONFIG_DIR ? path.resolve(env.CLAUDE_CONFIG_DIR) : path.join(home, '.claude');
}

/** ~/.claude.json, or $CLAUDE_CONFIG_DIR/.claude.json when that is set. */
export function claudeJsonPath(home: string, env: NodeJS.ProcessEnv): string {
  return env.CLAUDE_CONFIG_DIR ? path.join(path.resolve(env.CLAUDE_CONFIG_DIR), '.claude.json') : path.join(home, '.claude.json');
}

function malformed(source: string, what: string): ParaError {
  return new ParaError(`the Claude credentials in ${source} are malformed: ${what}`, {
    code: 'credentials-malformed',
    hint: 'log in again on the host (run `claude`, then /login), or use a token: `claude setup-token`, then make image TOKEN_FILE=<file>',
  });
}

export interface OauthLogin {
  accessToken: string;
  refreshToken?: string;
  expiresAt?: number;
  subscriptionType?: string;
}

/** Validates the credentials JSON without ever putting its content in an error. */
export function parseSubscriptionLogin(text: string, source: string): OauthLogin {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw malformed(source, 'not valid JSON');
  }
  const oauth = (data as { claudeAiOauth?: unknown } | null)?.claudeAiOauth as Record<string, unknown> | undefined;
  if (!oauth || typeof oauth !== 'object') throw malformed(source, 'no "claudeAiOauth" object');
  if (typeof oauth.accessToken !== 'string' || oauth.accessToken.length === 0) throw malformed(source, 'no access token');
  if (oauth.expiresAt !== undefined && typeof oauth.expiresAt !== 'number') throw malformed(source, '"expiresAt" is not a number');
  return {
    accessToken: oauth.accessToken,
    refreshToken: typeof oauth.refreshToken === 'string' ? oauth.refreshToken : undefined,
    expiresAt: typeof oauth.expiresAt === 'number' ? oauth.expiresAt : undefined,
    subscriptionType: typeof oauth.subscriptionType === 'string' ? oauth.subscriptionType : undefined,
  };
}

async function readSecretFile(
  file: string,
  readStdin: (() => Promise<string>) | undefined,
  what: string,
): Promise<{ value: string; source: string; modifiedAt?: number }> {
  if (file === '-') {
    if (!readStdin) throw new ParaError(`cannot read the ${what} from standard input here`);
    return { value: (await readStdin()).trim(), source: 'standard input' };
  }
  const resolved = path.resolve(file);
  let stat: fs.Stats;
  try {
    stat = await fs.stat(resolved);
  } catch {
    throw new ParaError(`the ${what} file ${resolved} does not exist or cannot be read`, {
      code: 'credentials-missing-file',
      hint: `check the path given for the ${what}`,
    });
  }
  if (!stat.isFile()) throw new ParaError(`the ${what} file ${resolved} is not a regular file`, { code: 'credentials-missing-file' });
  return { value: (await fs.readFile(resolved, 'utf8')).trim(), source: resolved, modifiedAt: stat.mtimeMs };
}

function checkSingleToken(value: string, source: string, what: string): void {
  if (value.length === 0) throw malformed(source, `the ${what} is empty`);
  if (/\s/.test(value)) throw malformed(source, `the ${what} must be a single line without spaces`);
}

async function fromTokenFile(options: DiscoverOptions, now: number): Promise<Credentials> {
  const { value, source, modifiedAt } = await readSecretFile(options.tokenFile!, options.readStdin, 'token');
  checkSingleToken(value, source, 'token');
  if (value.startsWith('sk-ant-api')) {
    throw new ParaError(`${source} holds an API key, not a setup-token`, {
      code: 'credentials-malformed',
      hint: 'pass it with --api-key-file (make image API_KEY_FILE=...)',
    });
  }
  return {
    kind: 'oauth-token',
    authMethod: 'oauth_token',
    source,
    expiresAt: (modifiedAt ?? now) + SETUP_TOKEN_LIFETIME_MS,
    expiryEstimated: true,
    sourceModifiedAt: modifiedAt,
    shapeWarning: shapeWarning(value, SETUP_TOKEN_SHAPE, source, 'a claude setup-token', 'sk-ant-oat01-…'),
    files: [
      { path: '.claude/settings.json', content: `${JSON.stringify({ env: { CLAUDE_CODE_OAUTH_TOKEN: value } }, null, 2)}\n` },
      { path: '.claude.json', content: `${JSON.stringify(filterClaudeJson({}), null, 2)}\n` },
    ],
  };
}

async function fromApiKeyFile(options: DiscoverOptions): Promise<Credentials> {
  const { value, source, modifiedAt } = await readSecretFile(options.apiKeyFile!, options.readStdin, 'API key');
  checkSingleToken(value, source, 'API key');
  // Claude asks once whether to use a key found in its environment; the answer is keyed by its last 20 characters.
  const claudeJson = { ...filterClaudeJson({}), customApiKeyResponses: { approved: [value.slice(-20)], rejected: [] } };
  return {
    kind: 'api-key',
    authMethod: 'api_key',
    source,
    sourceModifiedAt: modifiedAt,
    shapeWarning: shapeWarning(value, API_KEY_SHAPE, source, 'an Anthropic API key', 'sk-ant-api03-…'),
    files: [
      { path: '.claude/settings.json', content: `${JSON.stringify({ env: { ANTHROPIC_API_KEY: value } }, null, 2)}\n` },
      { path: '.claude.json', content: `${JSON.stringify(claudeJson, null, 2)}\n` },
    ],
  };
}

export interface KeychainOptions {
  env?: NodeJS.ProcessEnv;
  /** The `security` executable; found on env.PATH by default. */
  command?: string;
  timeoutMs?: number;
}

export type KeychainOutcome = 'found' | 'not-found' | 'locked' | 'failed';

/** What a `security find-generic-password` exit means; `man security` lists no codes, these are observed. */
export function keychainOutcome(exitCode: number | undefined, stderr: string): KeychainOutcome {
  if (exitCode === 0) return 'found';
  // errSecItemNotFound.
  if (exitCode === 44 || /could not be found in the keychain/i.test(stderr)) return 'not-found';
  // errSecInteractionNotAllowed (a locked keychain over SSH, no GUI) and errSecAuthFailed (a wrong or refused password).
  if (exitCode === 36 || exitCode === 51 || /User interaction is not allowed|The user name or passphrase you entered is not correct/i.test(stderr))
    return 'locked';
  return 'failed';
}

const KEYCHAIN_READ = ['find-generic-password', '-s', KEYCHAIN_SERVICE, '-w'];

/** The Claude Code login in the macOS Keychain; undefined when there is no such item. A locked keychain throws. */
export async function readKeychain(options: KeychainOptions = {}): Promise<string | undefined> {
  const command = options.command ?? 'security';
  const timeoutMs = options.timeoutMs ?? 15_000;
  const shown = `security ${KEYCHAIN_READ.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(' ')}`;
  // Never `cause: result` below: its stdout may hold part of the secret.
  const result = await execa(command, KEYCHAIN_READ, {
    env: childEnv({ PATH: (options.env ?? process.env).PATH }),
    extendEnv: false,
    reject: false,
    timeout: timeoutMs,
    stdin: 'ignore',
  });
  const stderr = typeof result.stderr === 'string' ? result.stderr.trim() : '';
  if (result.timedOut) {
    throw new ParaError(`the macOS Keychain did not answer within ${Math.round(timeoutMs / 1000)} s when asked for "${KEYCHAIN_SERVICE}"`, {
      code: 'keychain-timeout',
      hint: "a password prompt may be waiting on the Mac's screen: answer it (Always Allow), or unlock the keychain: security unlock-keychain ~/Library/Keychains/login.keychain-db",
    });
  }
  // No `security` on PATH: there is no Keychain to ask here, so the credentials file is tried next.
  if ((result as { code?: string }).code === 'ENOENT') return undefined;
  switch (keychainOutcome(result.exitCode, stderr)) {
    case 'found': {
      const text = typeof result.stdout === 'string' ? result.stdout.trim() : '';
      return text.length > 0 ? text : undefined;
    }
    case 'not-found':
      return undefined;
    case 'locked':
      throw new ParaError(
        `the macOS login keychain is locked, so the Claude login in "${KEYCHAIN_SERVICE}" cannot be read (${shown} exited ${result.exitCode}: ${stderr || 'no message'})`,
        {
          code: 'keychain-locked',
          hint:
            "unlock it: security unlock-keychain ~/Library/Keychains/login.keychain-db (or log in on the Mac's screen), then run again; " +
            'or pass a token instead: claude setup-token, then make image TOKEN_FILE=<file>',
        },
      );
    default:
      throw new ParaError(`could not read the macOS Keychain item "${KEYCHAIN_SERVICE}": ${shown} exited ${result.exitCode}${stderr ? `: ${stderr}` : ''}`, {
        code: 'keychain-failed',
        hint: `run ${shown} > /dev/null yourself to see the error; or pass a token instead: claude setup-token, then make image TOKEN_FILE=<file>`,
      });
  }
}

async function readClaudeJson(home: string, env: NodeJS.ProcessEnv): Promise<Record<string, unknown>> {
  const file = claudeJsonPath(home, env);
  if (!(await fs.pathExists(file))) return filterClaudeJson({});
  try {
    return filterClaudeJson(JSON.parse(await fs.readFile(file, 'utf8')));
  } catch {
    throw new ParaError(`${file} is not valid JSON`, { code: 'claude-json-malformed', hint: `fix or move ${file}, then run claude once on the host` });
  }
}

export interface SubscriptionLocation {
  places: string[];
  credentialsFile: string;
}

export function subscriptionPlaces(home: string, env: NodeJS.ProcessEnv, platform: NodeJS.Platform): SubscriptionLocation {
  const credentialsFile = path.join(configDir(home, env), '.credentials.json');
  const places = platform === 'darwin' ? [`macOS Keychain item "${KEYCHAIN_SERVICE}"`, credentialsFile] : [credentialsFile];
  return { places, credentialsFile };
}

async function fromSubscription(options: Required<Pick<DiscoverOptions, 'home' | 'env' | 'platform'>>): Promise<Credentials | undefined> {
  const { home, env, platform } = options;
  const { credentialsFile } = subscriptionPlaces(home, env, platform);
  let text: string | undefined;
  let source = credentialsFile;
  let modifiedAt: number | undefined;
  if (platform === 'darwin') {
    text = await readKeychain({ env });
    if (text !== undefined) source = `macOS Keychain item "${KEYCHAIN_SERVICE}"`;
  }
  if (text === undefined && (await fs.pathExists(credentialsFile))) {
    text = await fs.readFile(credentialsFile, 'utf8');
    modifiedAt = (await fs.stat(credentialsFile)).mtimeMs;
  }
  if (text === undefined) return undefined;
  const login = parseSubscriptionLogin(text, source);
  const claudeJson = await readClaudeJson(home, env);
  return {
    kind: 'subscription',
    authMethod: 'claude.ai',
    source,
    expiresAt: login.expiresAt,
    subscriptionType: login.subscriptionType,
    sourceModifiedAt: modifiedAt,
    account: accountFingerprint(claudeJson),
    files: [
      { path: '.claude/.credentials.json', content: text.endsWith('\n') ? text : `${text}\n` },
      { path: '.claude.json', content: `${JSON.stringify(claudeJson, null, 2)}\n` },
    ],
  };
}

/** First found wins: --token-file, --api-key-file, then the host's subscription login. */
export async function discoverCredentials(options: DiscoverOptions = {}): Promise<Credentials> {
  const home = options.home ?? os.homedir();
  const env = options.env ?? process.env;
  const platform = options.platform ?? process.platform;
  const now = (options.now ?? Date.now)();
  if (options.tokenFile) return fromTokenFile(options, now);
  if (options.apiKeyFile) return fromApiKeyFile(options);
  const found = await fromSubscription({ home, env, platform });
  if (found) return found;
  const { places } = subscriptionPlaces(home, env, platform);
  throw new ParaError(`no Claude credentials found (looked at: ${places.join('; ')}; no --token-file or --api-key-file given)`, {
    code: 'credentials-not-found',
    hint:
      `either log in on the host (run \`claude\`, then /login) and run ${makeCommand('image')} again; ` +
      `or run \`claude setup-token\`, save the token to a file and run ${makeCommand('image', { TOKEN_FILE: '<file>' })}; ` +
      `or run ${makeCommand('login')} to log in inside a container`,
  });
}
