// The boundary between a session container and the host's repository. The agent works in a git
// repository of its own (in the session's volume); the host's git folder is never writable from
// the container. Work comes back as data: a bundle streamed over docker exec, checked object by
// object (index-pack --strict) and for connectivity, then only para's own refs move.
import fs from 'fs-extra';
import { pipeline } from 'node:stream/promises';
import path from 'node:path';
import { withTempDir } from '../cleanup.ts';
import { config, extraLabels, labels, temporaryLabels } from '../config.ts';
import { ParaError } from '../errors.ts';
import { git } from '../git.ts';
import {
  AGENT_GIT_DIR,
  AGENT_VOLUME_DIR,
  MIRROR_DIR,
  MIRROR_TIPS,
  REMOTE_WORK_TREE,
  SEED_FROM_MIRROR,
  UPDATE_MIRROR,
  WAIT_FOR_REPOSITORY,
  type SeedPlan,
} from './agent-repo.ts';
import type { Engine } from '../engine/engine.ts';
import { exec } from './container.ts';
import { mountArg, type Mount } from '../engine/spec.ts';
import { repoLabels } from '../repo.ts';
import { labelArgs } from '../engine/spec.ts';
import { branchTip } from './resources.ts';
import { repoId, type Repo } from '../repo.ts';
import type { SessionPaths } from './paths.ts';

/** How the agent's repository gets the host's history, and where the agent's files are. */
export interface Transport {
  /** The engine does not see this machine's files: no bind mount, history and work move as bundles. */
  remote: boolean;
  /** Extra mounts for the session container. */
  mounts(repo: Repo): Promise<Mount[]>;
  /** How the container's start command makes the agent's repository at `commit`. */
  seedPlan(repo: Repo, paths: SessionPaths, commit: string, checkout: boolean): SeedPlan;
  /** The agent's work tree: the host folder (bind-mounted), or a folder in the session's volume. */
  workTree(paths: SessionPaths): { path: string; hostFolder: boolean };
}

const HOST_OBJECTS = '/para/host-objects';

/** Same engine, same filesystem: the host's object store mounted read-only is the agent's alternate. */
export const localTransport: Transport = {
  remote: false,
  workTree: (paths) => ({ path: paths.worktree, hostFolder: true }),
  async mounts(repo) {
    const objects = path.join(repo.commonDir, 'objects');
    const mounts: Mount[] = [{ type: 'bind', source: objects, target: HOST_OBJECTS, readonly: true }];
    // The host's own alternates (a clone made with --shared or --reference) are mounted where it expects them.
    for (const alternate of await hostAlternates(objects)) mounts.push({ type: 'bind', source: alternate, target: alternate, readonly: true });
    return mounts;
  },
  seedPlan(_repo, paths, commit, checkout) {
    return { alternate: HOST_OBJECTS, ref: paths.ref, commit, checkout };
  },
};

/** Another machine's engine: the history goes in as a bundle on docker exec's standard input. */
export const remoteTransport: Transport = {
  remote: true,
  workTree: () => ({ path: REMOTE_WORK_TREE, hostFolder: false }),
  async mounts(repo) {
    // The engine's copy of the history, shared by the repository's sessions there: later sessions send only what is new.
    return [
      {
        type: 'volume',
        source: mirrorVolume(repo),
        target: MIRROR_DIR,
        readonly: false,
        labels: { ...extraLabels(), ...repoLabels(repo.root), [labels.role]: 'mirror' },
      },
    ];
  },
  seedPlan(_repo, paths, commit, checkout) {
    return { alternate: '', ref: paths.ref, commit, checkout };
  },
};

/** The mirror volume of a repository on a remote engine. */
export function mirrorVolume(repo: Repo): string {
  return `para-mirror-${repoId(repo)}`;
}

export function transportFor(engine: { remote: boolean } | undefined): Transport {
  return engine?.remote ? remoteTransport : localTransport;
}

/**
 * Makes a remote session's repository: the host's new history of para/NAME goes as a bundle into
 * the engine's mirror, written by a short-lived container of its own (no agent's volume, no agent
 * process; the sessions mount the mirror read-only), then the agent's user clones from the mirror
 * into the volume. A volume that already holds the repository (a re-created container) is left as it is.
 */
export async function seedFromBundle(engine: Engine, container: string, repo: Repo, paths: SessionPaths, image: string): Promise<void> {
  await withTempDir('para-seed-', async (dir) => {
    const commit = await branchTip(repo, paths.ref);
    if (!commit) throw new ParaError(`${paths.branch} does not exist on the host`, { code: 'seed-failed' });
    const probe = `if [ -e ${AGENT_GIT_DIR} ] || [ -L ${AGENT_GIT_DIR} ]; then echo made; exit 0; fi; ${MIRROR_TIPS}`;
    const found = (await exec(engine, container, ['sh', '-c', probe], { root: true, allowFailure: true })).stdout.split('\n');
    if (!found.includes('made')) {
      // Only what the mirror lacks: its tips that the host knows are the bundle's prerequisites.
      const known: string[] = [];
      for (const tip of [...new Set(found.filter((l) => OID.test(l)))]) if (await hostHas(repo, tip)) known.push(tip);
      const file = path.join(dir, 'history.bundle');
      const made = await git(['bundle', 'create', '-q', file, paths.ref, ...known.map((tip) => `^${tip}`)], {
        cwd: repo.root,
        allowFailure: true,
        timeoutMs: 10 * 60_000,
      });
      // An empty bundle: the mirror has the whole history already.
      if (made.exitCode !== 0 && !/empty bundle/i.test(made.stderr))
        throw new ParaError(`could not bundle ${paths.branch}: ${made.stderr.trim()}`, { code: 'seed-failed' });
      if (made.exitCode === 0) await updateMirror(engine, repo, image, file, paths.ref, commit);
    }
    const result = await exec(engine, container, ['sh', '-c', SEED_FROM_MIRROR, 'para-seed', AGENT_VOLUME_DIR, paths.ref, REMOTE_WORK_TREE, commit], {
      root: true,
      allowFailure: true,
      timeoutMs: 10 * 60_000,
    });
    if (result.exitCode !== 0) {
      throw new ParaError(`the agent's repository could not be made in ${container}: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, {
        code: 'seed-failed',
        hint: 'check that the image has git and setpriv (util-linux), e.g. rebuild it: make image REBUILD_BASE=1',
      });
    }
  });
}

/** Adds a bundle to the engine's mirror from a throwaway container that mounts the mirror alone. */
async function updateMirror(engine: Engine, repo: Repo, image: string, bundle: string, ref: string, commit: string): Promise<void> {
  const args = ['run', '--rm', '--interactive', '--network', 'none', '--user', '0:0', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges'];
  args.push(...labelArgs(temporaryLabels('mirror-update')));
  args.push(...mountArg(mirrorMount(repo, false)), '--pull', 'never', '--entrypoint', 'sh', image, '-c', UPDATE_MIRROR, 'para-mirror', ref, commit);
  const result = await engine.docker(args, { inputFile: bundle, allowFailure: true, timeoutMs: 10 * 60_000 });
  if (result.exitCode !== 0) {
    throw new ParaError(`the engine's mirror of the history could not be updated: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, {
      code: 'seed-failed',
      hint: `if the mirror is damaged, remove it (docker volume rm ${mirrorVolume(repo)}) once no session of this repository runs on that engine`,
    });
  }
}

function mirrorMount(repo: Repo, readonly: boolean): Mount {
  return {
    type: 'volume',
    source: mirrorVolume(repo),
    target: MIRROR_DIR,
    readonly,
    labels: { ...extraLabels(), ...repoLabels(repo.root), [labels.repoId]: repoId(repo), [labels.role]: 'mirror' },
  };
}

async function hostAlternates(objects: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readFile(path.join(objects, 'info', 'alternates'), 'utf8');
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line && !line.startsWith('#') && path.isAbsolute(line) && (await fs.pathExists(line))) found.push(line);
  }
  return found;
}

/** Waits until the container's start command has made the agent's repository; its error otherwise. */
export async function waitForRepository(engine: Engine, container: string): Promise<void> {
  const result = await exec(engine, container, ['sh', '-c', WAIT_FOR_REPOSITORY], { root: true, allowFailure: true, timeoutMs: 90_000 });
  if (result.exitCode !== 0) {
    throw new ParaError(`${result.stderr.trim() || `the agent's repository in ${container} is not ready (exit code ${result.exitCode})`}`, {
      code: 'seed-failed',
      hint: 'check that the image has git and setpriv (util-linux), e.g. rebuild it: make image REBUILD_BASE=1',
    });
  }
}

// ---- bringing work back ---------------------------------------------------------------------

const OID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

/** git's own rules for a ref name (check-ref-format), so nothing else is ever handed to update-ref. */
export function isValidRefName(ref: string): boolean {
  if (!ref.startsWith('refs/') || ref.endsWith('/') || ref.endsWith('.') || ref.includes('..') || ref.includes('//') || ref.includes('@{')) return false;
  if (/[\x00-\x20\x7f~^:?*[\\]/.test(ref)) return false;
  return ref.split('/').every((part) => part.length > 0 && !part.startsWith('.') && !part.endsWith('.lock'));
}

const AGENT_REF = /^refs\/(heads|tags|notes)\/|^refs\/stash$/;

export interface AgentRefs {
  /** refs/heads/*, refs/tags/*, refs/notes/* and refs/stash, each as the commit it leads to. */
  refs: Map<string, string>;
  /** Refs that do not lead to a commit (a tag of a blob, say): reported, not brought back. */
  skipped: string[];
  /** HEAD's commit, when it has one. */
  head: string | null;
  /** The branch HEAD is on; null when detached. */
  headRef: string | null;
}

// set -e: a repository git cannot read must fail here, not look empty.
const REFS_SCRIPT = `${WAIT_FOR_REPOSITORY}
set -eu
git for-each-ref --format='%(objectname) %(objecttype) %(refname)' refs/heads
others=$(git for-each-ref --format='%(refname)' refs/tags refs/notes)
if git rev-parse -q --verify refs/stash >/dev/null; then others="$others
refs/stash"; fi
printf '%s\\n' "$others" | while IFS= read -r ref; do
  [ -n "$ref" ] || continue
  if c=$(git rev-parse -q --verify "$ref^{commit}"); then printf '%s commit %s\\n' "$c" "$ref"; else printf '%s none %s\\n' - "$ref"; fi
done
printf 'HEAD %s %s\\n' "$(git rev-parse -q --verify 'HEAD^{commit}' || echo -)" "$(git symbolic-ref -q HEAD || echo -)"`;

/** What the agent's repository says its refs are: untrusted data, parsed strictly. */
export async function readAgentRefs(engine: Engine, container: string): Promise<AgentRefs> {
  const result = await exec(engine, container, ['sh', '-c', REFS_SCRIPT], { allowFailure: true });
  if (result.exitCode !== 0) {
    throw new ParaError(`the agent's repository in ${container} cannot be read: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, {
      code: 'agent-repo-broken',
    });
  }
  const refs = new Map<string, string>();
  const skipped: string[] = [];
  let head: string | null = null;
  let headRef: string | null = null;
  for (const line of result.stdout.split('\n').filter(Boolean)) {
    const parts = line.split(' ');
    if (parts[0] === 'HEAD' && parts.length === 3) {
      head = OID.test(parts[1]) ? parts[1] : null;
      headRef = parts[2].startsWith('refs/heads/') && isValidRefName(parts[2]) ? parts[2] : null;
      continue;
    }
    const [oid, type, ref] = [parts[0], parts[1], parts.slice(2).join(' ')];
    if (!ref || !AGENT_REF.test(ref)) continue;
    if (OID.test(oid) && type === 'commit' && isValidRefName(ref)) refs.set(ref, oid);
    else skipped.push(ref);
  }
  return { refs, skipped, head, headRef };
}

export interface RefUpdate {
  /** What to ask the agent's git to bundle: a ref name, or HEAD. */
  source: string;
  /** The commit the agent says it is. */
  oid: string;
  /** The host ref to set, always under refs/heads/para/. */
  target: string;
}

/** Host commits that cannot be the agent's business to send back (already on the host). */
async function hostHas(repo: Repo, oid: string): Promise<boolean> {
  const result = await git(['cat-file', '-e', `${oid}^{commit}`], { cwd: repo.root, allowFailure: true });
  return result.exitCode === 0;
}

/**
 * Brings the agent's commits for these updates to the host and moves the target refs (all under
 * refs/heads/para/). `exclude` are host commits the bundle may assume (base, last synced tip).
 */
export async function receiveFromAgent(engine: Engine, container: string, repo: Repo, updates: RefUpdate[], exclude: string[]): Promise<string[]> {
  for (const update of updates) {
    if (!update.target.startsWith('refs/heads/para/') || !isValidRefName(update.target))
      throw new Error(`refusing to move ${update.target}: para moves only refs/heads/para/`);
  }
  const current = new Map<string, string | null>();
  for (const update of updates) current.set(update.target, await branchTip(repo, update.target));
  const pending = updates.filter((u) => current.get(u.target) !== u.oid);
  if (pending.length === 0) return [];
  const missing: RefUpdate[] = [];
  for (const update of pending) if (!(await hostHas(repo, update.oid))) missing.push(update);
  if (missing.length > 0) await fetchBundle(engine, container, repo, missing, exclude);
  for (const update of pending) {
    const type = await git(['cat-file', '-t', update.oid], { cwd: repo.root, allowFailure: true });
    if (type.stdout.trim() !== 'commit')
      throw new ParaError(`the agent's ${update.source} is not a commit on the host after the transfer`, { code: 'bad-bundle' });
  }
  // One transaction, each ref checked against the value read above.
  const lines = pending.map((u) => `update ${u.target} ${u.oid} ${current.get(u.target) ?? '0'.repeat(u.oid.length)}\n`).join('');
  await git(['update-ref', '--stdin', '-m', 'para: work brought back from the session container'], { cwd: repo.root, input: lines });
  return pending.map((u) => u.target);
}

async function fetchBundle(engine: Engine, container: string, repo: Repo, updates: RefUpdate[], exclude: string[]): Promise<void> {
  await withTempDir('para-bundle-', async (dir) => {
    const file = path.join(dir, 'work.bundle');
    const sources = [...new Set(updates.map((u) => u.source))];
    const args = ['git', 'bundle', 'create', '-q', '-', ...sources, ...exclude.map((oid) => `^${oid}`)];
    const limit = config.maxBundleBytes;
    const result = await exec(engine, container, args, { allowFailure: true, stdoutFile: file, maxStdoutBytes: limit, timeoutMs: 10 * 60_000 }).catch(
      (error: unknown) => {
        if (error instanceof ParaError && error.code === 'output-too-large') {
          throw new ParaError(`the agent's new commits in ${container} weigh more than ${Math.round(limit / 1024 / 1024)} MB; they were not brought back`, {
            code: 'bundle-too-large',
            hint: 'look at what the agent committed (docker exec it, git log --stat); raise PARA_MAX_BUNDLE_MB if it is right; finish and cancel keep its repository as a tar',
          });
        }
        throw error;
      },
    );
    if (result.exitCode !== 0) {
      throw new ParaError(`could not bundle the agent's work in ${container}: ${result.stderr.trim() || `exit code ${result.exitCode}`}`, {
        code: 'bundle-failed',
      });
    }
    await unbundle(repo, file, path.join(dir, 'work.pack'));
    // Every object the new tips need must now be on the host.
    const tips = [...new Set(updates.map((u) => u.oid))];
    const connected = await git(['rev-list', '--objects', '--quiet', ...tips, '--not', '--all'], { cwd: repo.root, allowFailure: true });
    if (connected.exitCode !== 0) {
      throw new ParaError(`the agent's bundle from ${container} is incomplete: ${connected.stderr.trim()}`, { code: 'bad-bundle' });
    }
  });
}

/** Reads a bundle's header and hands its pack to `git index-pack --strict` (git fetch from a bundle skips fsck). */
async function unbundle(repo: Repo, file: string, packFile: string): Promise<void> {
  const handle = await fs.promises.open(file, 'r');
  let headerLength = -1;
  let header = '';
  try {
    const buffer = Buffer.alloc(1 << 20);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const text = buffer.subarray(0, bytesRead);
    const end = text.indexOf('\n\n');
    if (end < 0) throw new ParaError("the agent's bundle has no valid header", { code: 'bad-bundle' });
    headerLength = end + 2;
    header = text.subarray(0, end).toString('utf8');
  } finally {
    await handle.close();
  }
  const lines = header.split('\n');
  if (!/^# v[23] git bundle$/.test(lines[0])) throw new ParaError("the agent's bundle has an unknown format", { code: 'bad-bundle' });
  for (const line of lines.slice(1)) {
    if (line.startsWith('@')) {
      if (!/^@object-format=sha(1|256)$/.test(line)) throw new ParaError(`the agent's bundle asks for ${line}`, { code: 'bad-bundle' });
    } else if (!/^-?[0-9a-f]{40}([0-9a-f]{24})?( [^\n]*)?$/.test(line)) {
      throw new ParaError("the agent's bundle has a malformed header line", { code: 'bad-bundle' });
    }
  }
  await pipeline(fs.createReadStream(file, { start: headerLength }), fs.createWriteStream(packFile, { mode: 0o600 }));
  await indexPackStrict(repo, packFile);
}

/** Adds a pack's objects to the repository only if every one passes git's fsck checks. */
export async function indexPackStrict(repo: Repo, packFile: string): Promise<void> {
  const result = await git(['index-pack', '--stdin', '--fix-thin', '--strict'], { cwd: repo.root, inputFile: packFile, allowFailure: true });
  if (result.exitCode !== 0) {
    throw new ParaError(`the agent's objects failed git's checks and were refused: ${result.stderr.trim()}`, { code: 'bad-bundle' });
  }
}
