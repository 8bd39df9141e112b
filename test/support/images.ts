// Test images: para-claude built once per run from the local base image and the real claude
// binary from node_modules; authenticated images built by the real build-image.ts.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { ensureClaudeImage, imageUserIds, PROJECT_ROOT } from '../../scripts/lib/image/build.ts';
import { ensureEgressImage } from '../../scripts/lib/image/egress-image.ts';
import { EGRESS_IMAGE, RUN_ID, sharedImage, TEST_LABEL, tempDir, trackImage } from './resources.ts';
import { shellEngine } from '../../scripts/lib/engine/engine.ts';

export const BASE_IMAGE = process.env.PARA_TEST_BASE_IMAGE || 'para-test-base:bookworm';
/** The real Linux claude binary: the wrapper's bin/claude.exe once its postinstall has replaced the
 * placeholder, else the platform package's own binary (when npm skipped install scripts). */
export const CLAUDE_BINARY =
  ['node_modules/@anthropic-ai/claude-code/bin/claude.exe', `node_modules/@anthropic-ai/claude-code-linux-${process.arch}/claude`]
    .map((file) => path.join(PROJECT_ROOT, file))
    .find((file) => fs.existsSync(file) && fs.statSync(file).size > 1_000_000) ??
  path.join(PROJECT_ROOT, 'node_modules/@anthropic-ai/claude-code/bin/claude.exe');
/** A fake but well-formed token, unique to this run, searched for wherever it must not be. */
export const FAKE_TOKEN = `sk-ant-oat01-PARAFAKE${RUN_ID}TOKEN`;
export const FAKE_REFRESH = `sk-ant-ort01-PARAFAKE${RUN_ID}REFRESH`;

/** tsx resolved from this project, so scripts can run with any working directory. */
export const TSX_LOADER = import.meta.resolve('tsx');

/**
 * How a test runs one of the scripts: the prebuilt bundle (dist/<script>.mjs, built once per run
 * by test/run.ts, as make start and para run them), or through tsx with PARA_TEST_VIA=tsx.
 */
export function scriptCommand(script: string): string[] {
  const name = script.replace(/\.ts$/, '');
  if (process.env.PARA_TEST_VIA === 'tsx') return [process.execPath, '--import', TSX_LOADER, path.join(PROJECT_ROOT, 'scripts', `${name}.ts`)];
  return [process.execPath, path.join(PROJECT_ROOT, 'dist', `${name}.mjs`)];
}

export const CLAUDE_IMAGE = sharedImage(`para-claude-test-${RUN_ID}:latest`);

let claudeImage: Promise<string> | undefined;

/** para-claude for this run, built at most once. */
export function testClaudeImage(): Promise<string> {
  if (process.env.PARA_TEST_SHARED_IMAGES === '1') claudeImage ??= Promise.resolve(CLAUDE_IMAGE);
  claudeImage ??= ensureClaudeImage(
    shellEngine,
    {
      claudeImage: CLAUDE_IMAGE,
      baseImage: BASE_IMAGE,
      baseImageExplicit: true,
      claudeBinary: CLAUDE_BINARY,
      rebuild: false,
      ids: imageUserIds(),
      stream: false,
    },
    () => undefined,
  ).then(() => CLAUDE_IMAGE);
  return claudeImage;
}

let egressImage: Promise<string> | undefined;

/** The egress proxy image for this run (squid and socat from the base image's sources), built at most once. */
export function testEgressImage(): Promise<string> {
  sharedImage(EGRESS_IMAGE);
  if (process.env.PARA_TEST_SHARED_IMAGES === '1') egressImage ??= Promise.resolve(EGRESS_IMAGE);
  egressImage ??= ensureEgressImage(shellEngine, { image: EGRESS_IMAGE, baseImage: BASE_IMAGE, rebuild: false, stream: false }, () => undefined).then(
    () => EGRESS_IMAGE,
  );
  return egressImage;
}

export interface FakeLogin {
  expiresAt?: number;
  subscriptionType?: string;
  accessToken?: string;
}

/** Every fake HOME of this run: where the fake token is meant to be (the source, not a leak). */
export const FAKE_HOMES = new Set<string>();

/** A temporary HOME holding a fake subscription login and a ~/.claude.json with project history. */
export async function fakeHome(login: FakeLogin = {}): Promise<string> {
  const home = await tempDir('para-test-home-');
  FAKE_HOMES.add(home);
  await fs.mkdir(path.join(home, '.claude'), { mode: 0o700 });
  const credentials = {
    claudeAiOauth: {
      accessToken: login.accessToken ?? FAKE_TOKEN,
      refreshToken: FAKE_REFRESH,
      expiresAt: login.expiresAt ?? Date.now() + 30 * 24 * 3600 * 1000,
      scopes: ['user:inference', 'user:profile'],
      subscriptionType: login.subscriptionType ?? 'max',
    },
  };
  await fs.writeFile(path.join(home, '.claude', '.credentials.json'), JSON.stringify(credentials), { mode: 0o600 });
  await fs.writeFile(
    path.join(home, '.claude.json'),
    JSON.stringify({
      hasCompletedOnboarding: true,
      userID: 'test-user',
      projects: { '/home/someone/private-project': { allowedTools: [], mcpServers: { secret: { command: 'x' } } } },
      mcpServers: { global: { command: 'y' } },
    }),
  );
  return home;
}

export interface ScriptResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** Runs one of the project's scripts as a user would, through tsx. */
export async function runScript(
  script: string,
  args: string[],
  options: { env?: Record<string, string | undefined>; cwd?: string; input?: string } = {},
): Promise<ScriptResult> {
  const [command, ...entry] = scriptCommand(script);
  const result = await execa(command, [...entry, ...args], {
    cwd: options.cwd ?? PROJECT_ROOT,
    env: { PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`, ...options.env },
    input: options.input,
    stdin: options.input === undefined ? 'ignore' : 'pipe',
    reject: false,
    timeout: 10 * 60_000,
  });
  return { stdout: String(result.stdout), stderr: String(result.stderr), exitCode: result.exitCode ?? -1 };
}

/** Builds an authenticated image with build-image.ts from a given HOME; tracked for removal. */
export async function buildAuthImage(
  tag: string,
  home: string,
  extraArgs: string[] = [],
  options: { tmpdir?: string; env?: Record<string, string | undefined> } = {},
): Promise<ScriptResult> {
  await testClaudeImage();
  trackImage(tag);
  return runScript('build-image.ts', ['--tag', tag, ...extraArgs], {
    env: { HOME: home, PARA_CLAUDE_IMAGE: CLAUDE_IMAGE, CLAUDE_CONFIG_DIR: undefined, ...(options.tmpdir ? { TMPDIR: options.tmpdir } : {}), ...options.env },
  });
}

/** The authenticated image every session test shares (start, lifecycle, containment, attach, hosts). */
export const SESSION_IMAGE = sharedImage(`para-session-test-${RUN_ID}:auth`);
let sessionImage: Promise<void> | undefined;

/** Builds SESSION_IMAGE from a fake login with the real build-image.ts, once per run (in test/run.ts when it runs files in parallel). */
export function sessionTestImage(): Promise<void> {
  sessionImage ??= (async () => {
    if (process.env.PARA_TEST_SHARED_IMAGES === '1') return;
    const result = await buildAuthImage(SESSION_IMAGE, await fakeHome());
    if (result.exitCode !== 0) throw new Error(`build-image.ts failed for ${SESSION_IMAGE}:\n${result.stderr}`);
  })();
  return sessionImage;
}

/** start's arguments for a detached container session of a test: NAME, the image, no network, then the rest. */
export function detachedArgs(name: string, image: string, ...rest: string[]): string[] {
  return [name, '--container', '--detach', '--network', 'none', '--image', image, ...rest];
}
