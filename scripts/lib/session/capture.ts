// Bringing a session's work home before it ends: its commits, its uncommitted files as a commit,
// and what cannot come back as refs as a tar; then its container, volume and folder retired.
// Only refs under para/ move, and only resources whose labels name this session are removed.
import { config } from '../config.ts';
import type { Engine } from '../engine/engine.ts';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { errorMessage, ParaError, UsageError } from '../errors.ts';
import { onInterrupt } from '../cleanup.ts';
import { git } from '../git.ts';
import { AGENT_VOLUME_DIR, WAIT_FOR_REPOSITORY } from './agent-repo.ts';
import { exec } from './container.ts';
import { sessionPaths, type SessionPaths } from './paths.ts';
import type { Repo } from '../repo.ts';
import {
  branchTip,
  pruneHostWorktrees,
  removeSessionContainer,
  removeSessionVolume,
  retireFolder,
  Rollback,
  sessionContainer,
  sessionVolumeExists,
  startSessionContainer,
  createSessionContainer,
} from './resources.ts';
import { snapshotFolder, type Snapshot } from './snapshot.ts';
import { containerSpec, gitIdentity } from './request.ts';
import { receiveFromAgent, seedFromBundle } from './transport.ts';
import { sessionEngine, starterAlive, type SessionState } from './store.ts';
import { syncSession, type SyncResult } from './sync.ts';

import type { Invocation } from './resolve.ts';

export interface Captured {
  sync: SyncResult | null;
  snapshot: Snapshot;
  /** Where the uncommitted files were committed, when there were any. */
  wipRef: string | null;
  /** A tar of the agent's whole repository, made when not everything in it could be brought back as refs. */
  repositoryTar: string | null;
  warnings: string[];
}

/** Makes the session's container readable again: started if stopped, re-created on its volume if removed. */
async function reachContainer(repo: Repo, state: SessionState, paths: SessionPaths, warnings: string[]): Promise<boolean> {
  const engine = sessionEngine(state);
  const found = await sessionContainer(engine, repo, paths);
  if (found.presence === 'stopped') await startSessionContainer(engine, repo, paths);
  // A finish interrupted mid-way may have left it paused.
  if (found.paused) await engine.unpauseContainer(paths.container);
  if (found.presence !== 'missing') return true;
  if (!(await sessionVolumeExists(engine, repo, paths))) {
    warnings.push(
      `the container and volume of session ${state.name} are gone: commits made inside since para last synced are lost; the folder's files are kept`,
    );
    return false;
  }
  if (!state.image || !(await engine.inspectImage(state.image))) {
    warnings.push(
      `the container of session ${state.name} is gone and its image ${state.image ?? ''} too: the agent's repository stays in the volume ${paths.volume}`,
    );
    return false;
  }
  const rollback = new Rollback();
  const tip = (await branchTip(repo, paths.ref)) ?? state.baseCommit;
  const spec = await containerSpec(repo, state, state.image, [], { commit: tip, checkout: false });
  await createSessionContainer(engine, spec, rollback);
  // A remote volume holds the repository: the new container marks it ready once it sees it.
  if (state.engine?.remote) await seedFromBundle(engine, paths.container, repo, paths, state.image);
  return true;
}

/**
 * A remote session's uncommitted files, committed inside its container by the agent's own git
 * (it is the agent's work either way) with a private index, on top of its HEAD, at
 * refs/para-snapshot/wip; what it prints is untrusted and parsed strictly. The commit comes back
 * through the same checked bundle as the agent's other commits.
 */
const REMOTE_SNAPSHOT = `${WAIT_FOR_REPOSITORY}
set -eu
probe="$1"; message="$2"
export GIT_INDEX_FILE="$(mktemp)"
trap 'rm -f "$GIT_INDEX_FILE"' EXIT
git read-tree HEAD 2>/dev/null || git read-tree --empty
git add -A
git status --porcelain --ignored | sed -n 's/^!! //p' | head -n 1000 | sed 's/^/ignored /'
# A nested repository is not the agent's files to commit here: left out, and reported, so its volume is kept.
git ls-files -s | awk -F '\t' '$1 ~ /^160000 / {print $2}' | head -n 1000 | while IFS= read -r p; do git rm -q --cached -- "$p"; echo "ignored $p"; done
tree=$(git write-tree)
head=$(git rev-parse -q --verify 'HEAD^{commit}' || true)
if [ -n "$head" ] && [ "$tree" = "$(git rev-parse "$head^{tree}")" ]; then echo "snapshot none"; exit 0; fi
if [ "$probe" = 1 ]; then echo "snapshot changes"; exit 0; fi
commit=$(if [ -n "$head" ]; then git commit-tree "$tree" -p "$head" -m "$message"; else git commit-tree "$tree" -m "$message"; fi)
git update-ref refs/para-snapshot/wip "$commit"
echo "snapshot $commit"`;

export async function remoteSnapshot(
  engine: Engine,
  container: string,
  message: string,
  probe: boolean,
  identity: { name: string; email: string },
): Promise<{ commit: string | null; changes: boolean; ignored: string[] }> {
  const env = { GIT_AUTHOR_NAME: identity.name, GIT_AUTHOR_EMAIL: identity.email, GIT_COMMITTER_NAME: identity.name, GIT_COMMITTER_EMAIL: identity.email };
  const result = await exec(
    engine,
    container,
    ['env', ...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'sh', '-c', REMOTE_SNAPSHOT, 'para-snapshot', probe ? '1' : '0', message],
    {
      allowFailure: true,
      timeoutMs: config.snapshot.timeoutMs,
    },
  );
  if (result.exitCode !== 0)
    throw new ParaError(`the session's files could not be committed inside its container: ${result.stderr.trim()}`, { code: 'snapshot-failed' });
  const lines = result.stdout.split('\n');
  const ignored = lines.filter((l) => l.startsWith('ignored ')).map((l) => l.slice('ignored '.length));
  const verdict = lines.find((l) => l.startsWith('snapshot '))?.slice('snapshot '.length) ?? '';
  if (verdict === 'none') return { commit: null, changes: false, ignored };
  if (verdict === 'changes') return { commit: null, changes: true, ignored };
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(verdict))
    throw new ParaError('the session container answered the snapshot with nonsense', { code: 'snapshot-failed' });
  return { commit: verdict, changes: true, ignored };
}

export async function identityOf(repo: Repo): Promise<{ name: string; email: string }> {
  const found = new Map(await gitIdentity(repo.root));
  return { name: found.get('user.name') ?? 'para', email: found.get('user.email') ?? 'para@localhost' };
}

/**
 * Everything in the session's volume (the agent's repository and anything beside it) as a tar on
 * the host: data, never opened by para. Made once no agent process runs; links are stored as links.
 */
async function saveRepositoryTar(engine: Engine, container: string, warnings: string[]): Promise<string | null> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'para-agent-repo-'));
  const file = path.join(dir, 'agent-repository.tar');
  const result = await exec(engine, container, ['tar', '--sparse', '-C', AGENT_VOLUME_DIR, '-cf', '-', '.'], {
    root: true,
    stdoutFile: file,
    maxStdoutBytes: config.maxBundleBytes,
    timeoutMs: 10 * 60_000,
    allowFailure: true,
  }).catch((error: unknown) => {
    if (error instanceof ParaError && error.code === 'output-too-large')
      return { exitCode: -1, stdout: '', stderr: `it weighs more than PARA_MAX_BUNDLE_MB (${Math.round(config.maxBundleBytes / 1024 / 1024)} MB)` };
    throw error;
  });
  if (result.exitCode === 0) return file;
  await fs.rm(dir, { recursive: true, force: true });
  warnings.push(`the agent's repository could not be saved as a tar (${result.stderr.trim() || `exit code ${result.exitCode}`}); it stays in its volume`);
  return null;
}

/** Ends every process of the agent's user in the container: nothing it runs can change what is being saved. */
async function stopAgent(engine: Engine, container: string): Promise<void> {
  await exec(engine, container, ['sh', '-c', 'kill -KILL -1 2>/dev/null; exit 0'], { allowFailure: true });
}

/**
 * Brings everything the agent made to the host: its branch to para/NAME, its other refs under
 * `prefix`, and its uncommitted files as a commit on top of its HEAD (read by the host's git as
 * data while the container is paused, so nothing can change under it). What cannot come back as
 * refs is kept as a tar of the agent's repository.
 */
export async function captureWork(
  repo: Repo,
  state: SessionState,
  prefix: string,
  message: string | undefined,
  requireMessage: Invocation | null,
): Promise<Captured> {
  const engine = sessionEngine(state);
  const paths = sessionPaths(repo, state.name);
  const warnings: string[] = [];
  const identity = await identityOf(repo);
  const running = state.container ? await reachContainer(repo, state, paths, warnings) : false;
  const snapshotOf = (base: string, probe: boolean) =>
    snapshotFolder({
      repo,
      folder: paths.worktree,
      base,
      message: message ?? `para: uncommitted work of session ${state.name}`,
      identity,
      expectGitFile: !state.container,
      probe,
    });
  // Nothing may change the folder while the host's git reads it.
  const frozen = async <T>(work: () => Promise<T>): Promise<T> => {
    if (running) await engine.pauseContainer(paths.container);
    try {
      return await work();
    } finally {
      if (running) await engine.unpauseContainer(paths.container).catch(() => undefined);
    }
  };
  const remote = Boolean(state.engine?.remote);
  if (requireMessage && !message) {
    // Against the agent's latest commit, not the one para last brought back: its committed work is not "uncommitted".
    if (running && !remote) await syncSession(repo, state);
    const probe = remote
      ? { commit: running && (await remoteSnapshot(engine, paths.container, 'para: probe', true, identity)).changes ? 'changes' : null }
      : await frozen(async () => snapshotOf((await branchTip(repo, paths.ref)) ?? state.baseCommit, true));
    if (probe.commit)
      throw new UsageError(
        `session ${state.name} has uncommitted changes, so a commit message is needed`,
        `${requireMessage('finish')} ${state.name} -m "what was done"`,
      );
  }
  let sync: SyncResult | null = null;
  let repositoryTar: string | null = null;
  let inside: Awaited<ReturnType<typeof remoteSnapshot>> | null = null;
  if (running) {
    await stopAgent(engine, paths.container);
    try {
      sync = await syncSession(repo, state, { keepOthersUnder: prefix });
      warnings.push(...sync.warnings);
    } catch (error) {
      warnings.push(`the agent's repository could not be brought back as branches (${errorMessage(error)})`);
    }
    if (remote) {
      inside = await remoteSnapshot(engine, paths.container, message ?? `para: uncommitted work of session ${state.name}`, false, identity).catch(
        (error: unknown) => {
          warnings.push(errorMessage(error));
          return null;
        },
      );
    }
    // Ignored files of a remote session exist only in its volume: the volume is kept as a tar.
    if (!sync || sync.notKept.length > 0 || (remote && (!inside || inside.ignored.length > 0)))
      repositoryTar = await saveRepositoryTar(engine, paths.container, warnings);
  }
  const stopTar = repositoryTar ? onInterrupt(() => fs.rm(path.dirname(repositoryTar!), { recursive: true, force: true })) : () => undefined;
  try {
    let base = (await branchTip(repo, paths.ref)) ?? state.baseCommit;
    let target = paths.ref;
    const head = sync?.agent?.head;
    if (head && (await branchTip(repo, head))) {
      base = head;
      if (sync?.agent?.headRef !== paths.ref) target = `refs/heads/${prefix}.wip`;
    }
    let wipRef: string | null = null;
    let snapshot: Snapshot;
    if (remote) {
      snapshot = { commit: inside?.commit ?? null, uncaptured: inside?.ignored ?? [], plantedGit: false, refused: null, written: Boolean(inside?.changes) };
      if (inside?.commit) {
        // Brought back like any of the agent's commits: a checked bundle, then only para's ref moves.
        await receiveFromAgent(engine, paths.container, repo, [{ source: 'refs/para-snapshot/wip', oid: inside.commit, target }], [state.baseCommit, base]);
        wipRef = target.slice('refs/heads/'.length);
      }
    } else {
      snapshot = await frozen(() => snapshotOf(base, false));
      if (snapshot.commit) {
        const old = (await branchTip(repo, target)) ?? '0'.repeat(snapshot.commit.length);
        await git(['update-ref', '-m', 'para: uncommitted work', target, snapshot.commit, old], { cwd: repo.root });
        wipRef = target.slice('refs/heads/'.length);
      }
    }
    if (snapshot.refused) warnings.push(`the folder's files could not be committed: ${snapshot.refused}`);
    if (snapshot.plantedGit) warnings.push('the worktree folder held a .git that para did not make; it was never used');
    return { sync, snapshot, wipRef, repositoryTar, warnings };
  } catch (error) {
    if (repositoryTar) await fs.rm(path.dirname(repositoryTar), { recursive: true, force: true });
    throw error;
  } finally {
    stopTar();
  }
}

/**
 * Removes the container, the volume and the folder. What could not be committed (ignored files,
 * nested repositories, refused files, the agent's repository) goes to .para/kept/NAME-<time>/.
 */
export async function retire(repo: Repo, state: SessionState, captured: Captured): Promise<string | null> {
  const engine = sessionEngine(state);
  const paths = sessionPaths(repo, state.name);
  const keepFiles = captured.snapshot.uncaptured.length > 0 || captured.snapshot.refused !== null;
  if (state.container) await removeSessionContainer(engine, repo, paths);
  const kept = await retireFolder(repo, paths, keepFiles, captured.repositoryTar);
  if (state.container) {
    // Without a copy of its repository, a volume whose refs did not all come back stays.
    if (captured.sync && captured.sync.notKept.length === 0) await removeSessionVolume(engine, repo, paths);
    else if (captured.repositoryTar) await removeSessionVolume(engine, repo, paths);
    else if (await sessionVolumeExists(engine, repo, paths)) captured.warnings.push(`the agent's repository is kept in the docker volume ${paths.volume}`);
  }
  if (!state.container) await pruneHostWorktrees(repo);
  return kept;
}

export function checkFinishable(state: SessionState, invocation: Invocation): void {
  if (state.status === 'finished')
    throw new ParaError(`session ${state.name} is already finished; its branch ${state.branch} is kept`, {
      code: 'session-finished',
      hint: `merge it: git merge ${state.branch}`,
    });
  if (state.status === 'starting' && starterAlive(state))
    throw new ParaError(`session ${state.name} is still starting`, {
      code: 'session-busy',
      hint: `wait for the start to end, or run ${invocation('clean')} if it was interrupted`,
    });
}

export function savedRefs(captured: Captured, mainRef: string): string[] {
  const saved = (captured.sync?.moved ?? []).filter((ref) => ref !== mainRef).map((ref) => ref.slice('refs/heads/'.length));
  if (captured.wipRef && captured.wipRef !== mainRef.slice('refs/heads/'.length)) saved.push(captured.wipRef);
  return [...new Set(saved)];
}

/** The job's exit status, read before finish ends the agent's processes (a finished job is not "lost"). */
