// A repository's own tools: .para/image/Dockerfile (committed by the team; the folder .para/image/
// is its whole build context) adds what the agent needs to build and test the project. Layers:
// base -> para-claude -> the repository's tools -> credentials, so a new login replaces only the
// last, small layer. The tools image is keyed by a hash of the folder and of para-claude's image
// ID; the session image by the tools image and the login (para-authenticated) it copies. A
// brokered session (the default) needs no credentials layer: it runs from the tools image itself.
import { createHash } from 'node:crypto';
import fs from 'fs-extra';
import path from 'node:path';
import { imageAuthStatus, assertLoggedIn } from './auth-status.ts';
import { onInterrupt } from '../cleanup.ts';
import { config, LABEL_PREFIX, labels, MANAGED_BY } from '../config.ts';
import type { Engine } from '../engine/engine.ts';
import { DockerError } from '../engine/docker.ts';
import type { ImageInfo } from '../engine/engine.ts';
import { ParaError } from '../errors.ts';
import { makeCommand } from '../cli.ts';
import { buildContainerName, commitHomeLayer, promoteImage, temporaryTag } from './build.ts';
import { repoHash, type Repo } from '../repo.ts';

export const REPO_IMAGE_DIR = path.join('.para', 'image');
const MAX_CONTEXT_BYTES = 64 * 1024 * 1024;
/** What the repository's Dockerfile builds on: para passes para-claude's image ID. */
const BASE_REF = /^\$(\{PARA_BASE\}|PARA_BASE)$/;

/**
 * Why a repository's Dockerfile cannot be built (null: it can). It may build only on para-claude
 * (${PARA_BASE}) and on its own earlier stages: a FROM, COPY --from or RUN --mount from= naming any
 * other image would let it copy what that image holds (a login image's credentials) into the
 * tools every brokered session runs from. Read as docker reads it: comments dropped, continued
 * lines joined; a parser directive (another escape character, a syntax frontend) is refused.
 */
export function toolsDockerfileProblem(text: string): string | null {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  if (lines.some((line) => /^\s*#\s*(syntax|escape|check)\s*=/i.test(line)))
    return 'it has a parser directive (# syntax=, # escape=), which para does not build';
  const instructions: string[] = [];
  let current = '';
  for (const line of lines) {
    if (/^\s*#/.test(line)) continue;
    // A backslash then spaces ends a line one way for one builder and the other way for another: refused.
    if (/\\[ \t]+$/.test(line)) return 'a line ends with a backslash and then spaces (trim them)';
    const continued = line.endsWith('\\');
    // Joined as docker joins them: the backslash and the line break go, nothing is put between.
    current += continued ? line.slice(0, -1) : `${line} `;
    if (!continued) {
      if (current.trim()) instructions.push(current.trim());
      current = '';
    }
  }
  if (current.trim()) instructions.push(current.trim());
  const stages: string[] = [];
  for (const instruction of instructions) {
    const [word = '', ...rest] = instruction.split(/\s+/);
    const keyword = word.toUpperCase();
    if (keyword === 'FROM') {
      const [image = '', as, name, ...more] = rest;
      const alias = as?.toUpperCase() === 'AS' && name && /^[a-z][a-z0-9._-]*$/i.test(name) ? name.toLowerCase() : undefined;
      if (more.length || (as !== undefined && !alias)) return `its FROM line \`${instruction}\` is not FROM \${PARA_BASE} [AS name]`;
      if (!BASE_REF.test(image) && (stages.length === 0 || !stages.includes(image.toLowerCase())))
        return `its FROM line \`${instruction}\` builds on something other than \${PARA_BASE} or an earlier stage`;
      stages.push(alias ?? `#${stages.length}`);
      continue;
    }
    if (stages.length === 0 && keyword !== 'ARG') return `\`${instruction}\` comes before its FROM \${PARA_BASE}`;
    for (const flag of rest) {
      if (!flag.startsWith('--')) break;
      const from = /^--from=(.*)$/i.exec(flag)?.[1] ?? /(?:^--mount=|,)from=([^,]*)/i.exec(flag)?.[1];
      if (from === undefined) continue;
      const earlier = stages.slice(0, -1);
      const index = /^\d+$/.test(from) ? Number(from) : -1;
      if (!earlier.includes(from.toLowerCase()) && !(index >= 0 && index < earlier.length))
        return `\`${instruction}\` copies from ${JSON.stringify(from)}, which is not an earlier stage of this Dockerfile`;
    }
  }
  return stages.length ? null : 'it has no FROM ${PARA_BASE}';
}

export function repoImageTags(repo: Repo): { tools: string; session: string } {
  const hash = repoHash(repo.root);
  return { tools: `para-tools-${hash}:latest`, session: `para-repo-${hash}:latest` };
}

interface Context {
  dir: string;
  dockerfile: string;
  /** A hash of every file in the folder: names, modes, contents, link targets. */
  hash: string;
}

/** The repository's image folder from the main checkout, or null when it has none. Never followed through a link. */
export async function repoImageContext(repo: Repo): Promise<Context | null> {
  const dir = path.join(repo.root, REPO_IMAGE_DIR);
  const stat = await fs.lstat(dir).catch(() => undefined);
  if (!stat) return null;
  const bad = (why: string) =>
    new ParaError(`${dir} ${why}`, { code: 'repo-image-invalid', hint: 'make .para/image a plain folder holding a Dockerfile (see the README)' });
  if (!stat.isDirectory()) throw bad('is not a folder');
  const dockerfile = path.join(dir, 'Dockerfile');
  const file = await fs.lstat(dockerfile).catch(() => undefined);
  if (!file?.isFile()) throw bad('has no Dockerfile (a plain file)');
  const text = await fs.readFile(dockerfile, 'utf8');
  const problem = toolsDockerfileProblem(text);
  if (problem) {
    throw new ParaError(`${dockerfile} must build on para's image only (FROM \${PARA_BASE}, after ARG PARA_BASE, and its own stages): ${problem}`, {
      code: 'repo-image-invalid',
      hint: 'start it with the two lines: ARG PARA_BASE / FROM ${PARA_BASE}; copy only from the build context or an earlier stage of it',
    });
  }
  const hash = createHash('sha256');
  let total = 0;
  const walk = async (folder: string): Promise<void> => {
    for (const name of (await fs.readdir(folder)).sort()) {
      const full = path.join(folder, name);
      const entry = await fs.lstat(full);
      const relative = path.relative(dir, full);
      hash.update(`${relative}\0${entry.mode}\0`);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isSymbolicLink()) hash.update(await fs.readlink(full));
      else if (entry.isFile()) {
        total += entry.size;
        if (total > MAX_CONTEXT_BYTES) throw bad(`holds more than ${MAX_CONTEXT_BYTES / 1024 / 1024} MB: keep only what the Dockerfile copies`);
        hash.update(await fs.readFile(full));
      } else throw bad(`holds ${relative}, which is not a file, folder or link`);
      hash.update('\0');
    }
  };
  await walk(dir);
  return { dir, dockerfile, hash: hash.digest('hex') };
}

/** Raised when what para checks in a tools image changes: one built before is built again, under the checks. */
const TOOLS_CHECKS = 'checked-2';

function toolsKey(context: Context, parent: ImageInfo): string {
  return createHash('sha256').update(`${context.hash}\0${parent.Id}\0${TOOLS_CHECKS}`).digest('hex').slice(0, 32);
}

/** The login's files in an image (~/.claude and ~/.claude.json), as tars read through docker cp, never written to disk. */
async function loginArchives(engine: Engine, image: string): Promise<Buffer[]> {
  const container = (
    await engine.docker(['create', '--name', buildContainerName(), '--network', 'none', image, 'true'], { timeoutMs: config.timeouts.dockerQuickMs })
  ).stdout.trim();
  const stopListening = onInterrupt(() => engine.docker(['rm', '--force', container], { allowFailure: true }));
  try {
    const archives: Buffer[] = [];
    for (const item of ['.claude', '.claude.json']) {
      const chunks: Buffer[] = [];
      await engine.docker(['cp', `${container}:${config.containerHome}/${item}`, '-'], {
        onStdout: (chunk) => chunks.push(chunk),
        timeoutMs: config.timeouts.dockerQuickMs,
      });
      archives.push(Buffer.concat(chunks));
    }
    return archives;
  } finally {
    await engine.docker(['rm', '--force', container], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
    stopListening();
  }
}

/**
 * para's labels (dev.para.*) are how para tells its containers apart (a broker, a session, a
 * temporary leftover); every container made from an image carries the image's labels. A
 * repository's Dockerfile may set labels of its own, never para's: one that sets or changes a
 * dev.para.* label is refused.
 */
function assertOwnLabels(built: ImageInfo | undefined, parent: ImageInfo, dockerfile: string, root: string): void {
  const mine = built?.Config.Labels ?? {};
  const base = parent.Config.Labels ?? {};
  const ours = new Set<string>([labels.managedBy, labels.repo, labels.toolsKey, labels.builtAt]);
  const changed = Object.keys(mine).filter((key) => key.startsWith(LABEL_PREFIX) && !ours.has(key) && mine[key] !== base[key]);
  if (changed.length === 0) return;
  throw new ParaError(
    `${path.relative(root, dockerfile)} sets para's own labels (${changed.sort().join(', ')}): para reads them to tell its containers apart`,
    {
      code: 'tools-labels',
      hint: `remove those LABEL lines (labels outside ${LABEL_PREFIX} are fine)`,
    },
  );
}

export interface RepoImageOptions {
  stream: boolean;
  log: (line: string) => void;
  /** The login baked in on top (--credentials image, or no proxy to reach the broker through); false: the tools image alone (the broker holds the login). */
  withLogin: boolean;
}

/**
 * The repository's session image, built or refreshed when needed: the tools when the folder or
 * para-claude changed, and (withLogin) the credentials layer when para-authenticated holds another
 * login. Returns its tag (the tools image's without the login), or null when the repository has no .para/image.
 */
export async function ensureRepoImage(engine: Engine, repo: Repo, options: RepoImageOptions): Promise<string | null> {
  const context = await repoImageContext(repo);
  if (!context) return null;
  const tags = repoImageTags(repo);
  const [parent, login] = await Promise.all([engine.inspectImage(config.claudeImage), engine.inspectImage(config.authenticatedImage)]);
  if (!parent || !login) {
    throw new ParaError(`this repository's image builds on ${parent ? config.authenticatedImage : config.claudeImage}, which does not exist`, {
      code: 'image-missing',
      hint: `run: ${makeCommand('image')}`,
    });
  }
  const key = toolsKey(context, parent);
  let tools = await engine.inspectImage(tags.tools);
  if (tools?.Config.Labels?.[labels.toolsKey] !== key) {
    options.log(
      `building this repository's tools (${path.relative(repo.root, context.dockerfile)}) on ${config.claudeImage}: ${tools ? 'it changed' : 'not built yet'}`,
    );
    const temporary = temporaryTag();
    const stopListening = onInterrupt(() => engine.removeImage(temporary, { force: true }).catch(() => undefined));
    try {
      await engine
        .buildImage({
          dockerfile: context.dockerfile,
          context: context.dir,
          tag: temporary,
          stream: options.stream,
          buildArgs: { PARA_BASE: parent.Id },
          labels: { [labels.managedBy]: MANAGED_BY, [labels.repo]: repo.root, [labels.toolsKey]: key, [labels.builtAt]: new Date().toISOString() },
        })
        .catch((error: unknown) => {
          if (error instanceof DockerError && error.kind === 'command-failed') {
            throw new ParaError(`building this repository's tools (${context.dockerfile}) failed`, {
              code: 'build-failed',
              cause: error,
              hint: `fix ${path.relative(repo.root, context.dockerfile)}; the build output is above${options.stream ? '' : ' (run start in a terminal to see it live)'}`,
            });
          }
          throw error;
        });
      assertOwnLabels(await engine.inspectImage(temporary), parent, context.dockerfile, repo.root);
      await promoteImage(engine, temporary, tags.tools);
    } finally {
      await engine.removeImage(temporary, { force: true }).catch(() => undefined);
      stopListening();
    }
    tools = await engine.inspectImage(tags.tools);
    if (!tools) throw new ParaError(`${tags.tools} vanished after its build`, { code: 'build-failed' });
  }
  // Checked when reused too: the tag could have been moved to an image para did not check.
  assertOwnLabels(tools, parent, context.dockerfile, repo.root);
  // A brokered session needs no login layer: it runs from the tools, the broker takes the login from PARA_IMAGE.
  if (!options.withLogin) return tags.tools;
  const session = await engine.inspectImage(tags.session);
  const l = session?.Config.Labels ?? {};
  if (session && l[labels.toolsImage] === tools.Id && l[labels.credentialsFrom] === login.Id) return tags.session;
  options.log(`${session ? 'refreshing the login in' : 'adding your login to'} ${tags.session} (from ${config.authenticatedImage})`);
  const temporary = temporaryTag();
  const stopListening = onInterrupt(() => engine.removeImage(temporary, { force: true }).catch(() => undefined));
  try {
    // The login's labels (method, expiry, source) come along; the tools' user and command stay para-claude's.
    const loginLabels = Object.fromEntries(
      Object.entries(login.Config.Labels ?? {}).filter(([key]) => key.startsWith(labels.managedBy.replace('managed-by', '')) && key !== labels.builtAt),
    );
    await commitHomeLayer(engine, {
      claudeImage: tags.tools,
      claudeInfo: tools,
      tag: temporary,
      labels: {
        ...loginLabels,
        [labels.repo]: repo.root,
        [labels.toolsImage]: tools.Id,
        [labels.credentialsFrom]: login.Id,
        [labels.builtAt]: new Date().toISOString(),
      },
      archive: await loginArchives(engine, config.authenticatedImage),
      into: config.containerHome,
      chown: [`${config.containerHome}/.claude`, `${config.containerHome}/.claude.json`],
      runAs: { user: parent.Config.User || config.containerUser, cmd: parent.Config.Cmd ?? ['claude'] },
    });
    assertLoggedIn(await imageAuthStatus(engine, temporary), login.Config.Labels?.[labels.authMethod], tags.session);
    await promoteImage(engine, temporary, tags.session);
  } finally {
    await engine.removeImage(temporary, { force: true }).catch(() => undefined);
    stopListening();
  }
  return tags.session;
}
