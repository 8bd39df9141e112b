import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { labels } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { inspectContainer } from './support/verbs.ts';
import { imageUserIds, PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';

function containerName(root: string, name: string): string {
  return sessionPaths({ root, commonDir: path.join(root, '.git') }, name).container;
}

function stateFile(root: string, name: string): string {
  return sessionPaths({ root, commonDir: path.join(root, '.git') }, name).stateFile;
}
import { runScript, SESSION_IMAGE, sessionTestImage, type ScriptResult, detachedArgs } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { RUN_ID, TEST_LABEL, onCleanup, tempDir, uniqueName } from './support/resources.ts';

const IMAGE = SESSION_IMAGE;
const image = sessionTestImage;

function script(repo: TestRepo, name: string, args: string[]): Promise<ScriptResult> {
  return runScript(name, args, { cwd: repo.root, env: repo.env });
}

/** A detached session running `sh -c body`, waited for until its job has exited. */
async function session(repo: TestRepo, name: string, body = 'true'): Promise<void> {
  const started = await script(repo, 'start.ts', [name, '--container', '--detach', '--network', 'none', '--image', IMAGE, '--', 'sh', '-c', body]);
  assert.is(started.exitCode, 0, started.stderr);
  const follow = await script(repo, 'logs.ts', [name, '--follow']);
  assert.is(follow.exitCode, 0, `job of ${name} failed: ${follow.stdout}${follow.stderr}`);
}

// biome-ignore lint/suspicious/noExplicitAny: the JSON documents the tests read
async function listJson(repo: TestRepo): Promise<{ sessions: Array<Record<string, any>>; orphanContainers: Array<Record<string, any>> }> {
  const result = await script(repo, 'list.ts', ['--json']);
  assert.is(result.exitCode, 0, result.stderr);
  return JSON.parse(result.stdout);
}

/** A container labelled as para's for `root` (and `session`), as a crashed run or another tool could leave it. */
async function strayContainer(name: string, root: string, session?: string): Promise<void> {
  const sessionLabel = session ? ['--label', `${labels.session}=${session}`] : [];
  await docker([
    'create',
    '--label',
    `${labels.managedBy}=para`,
    '--label',
    `${labels.repo}=${root}`,
    ...sessionLabel,
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    '--name',
    name,
    '--network',
    'none',
    IMAGE,
    'true',
  ]);
}

/** A volume labelled as a session's of `root`. */
async function strayVolume(name: string, root: string, session: string): Promise<void> {
  await docker([
    'volume',
    'create',
    '--label',
    `${labels.managedBy}=para`,
    '--label',
    `${labels.repo}=${root}`,
    '--label',
    `${labels.session}=${session}`,
    name,
  ]);
}

const logs = suite('logs and list');

logs.before(image);

logs("a background job's output is readable, followed to its end, and its exit status recorded", async () => {
  const repo = await makeRepo();
  const started = await script(repo, 'start.ts', detachedArgs('job', IMAGE, '--', 'sh', '-c', 'echo first; sleep 1; echo second; exit 3'));
  assert.is(started.exitCode, 0, started.stderr);
  const follow = await script(repo, 'logs.ts', ['job', '-f']);
  assert.is(follow.exitCode, 3);
  assert.is(follow.stdout, 'first\nsecond');
  const once = await script(repo, 'logs.ts', ['job', '--json']);
  assert.equal(JSON.parse(once.stdout), { ok: true, name: 'job', output: 'first\nsecond\n', exitCode: 3, running: false, state: 'exited' });
  const state = JSON.parse(await fs.readFile(stateFile(repo.root, 'job'), 'utf8'));
  assert.is(state.job.exitCode, 3);
});

logs('list shows running, exited and missing containers, uncommitted changes and orphans', async () => {
  const repo = await makeRepo();
  await session(repo, 'alive');
  await session(repo, 'stopped', 'echo change > new.txt');
  await session(repo, 'gone');
  await docker(['stop', '--time', '1', containerName(repo.root, 'stopped')]);
  await docker(['rm', '-f', containerName(repo.root, 'gone')]);
  const stray = uniqueName('para-stray');
  await strayContainer(stray, repo.root, 'ghost');
  const view = await listJson(repo);
  const byName = Object.fromEntries(view.sessions.map((s) => [s.name, s]));
  assert.is(byName.alive.containerState, 'running');
  assert.is(byName.alive.uncommittedChanges, false);
  assert.is(byName.stopped.containerState, 'exited');
  // Only the agent's git can tell, and it is not running: list never reads the folder itself.
  assert.is(byName.stopped.uncommittedChanges, null);
  assert.is(byName.gone.containerState, 'missing');
  assert.is(byName.gone.orphan, 'no-container');
  assert.is(byName.alive.orphan, null);
  assert.equal(
    view.orphanContainers.map((c) => c.name),
    [stray],
  );
  const table = await script(repo, 'list.ts', []);
  assert.match(table.stdout, /alive\s+active\s+running/);
  assert.match(table.stdout, `orphan container ${stray}`);
});

logs.run();

const finish = suite('finish');

finish.before(image);

finish('finish commits pending work, removes container and worktree, keeps the branch', async () => {
  const repo = await makeRepo();
  await session(repo, 'feat', 'echo done > feature.txt');
  const withoutMessage = await script(repo, 'finish.ts', ['feat']);
  assert.is(withoutMessage.exitCode, 2);
  assert.match(withoutMessage.stderr, '-m');
  const result = await script(repo, 'finish.ts', ['feat', '-m', 'add the feature', '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  const json = JSON.parse(result.stdout);
  assert.is(json.committed, true);
  assert.match(json.mergeHint, 'git merge para/feat');
  assert.is(await repo.git(['log', '-1', '--format=%s', 'para/feat']), 'add the feature');
  assert.is(await repo.git(['show', 'para/feat:feature.txt']), 'done');
  assert.is(await inspectContainer(containerName(repo.root, 'feat')), undefined);
  assert.not.ok(await fs.pathExists(path.join(repo.root, '.para/worktrees/feat')));
  assert.is((await listJson(repo)).sessions[0].status, 'finished');
  assert.is(await repo.git(['status', '--porcelain']), '');
});

finish('finish with nothing to commit needs no message', async () => {
  const repo = await makeRepo();
  await session(repo, 'clean');
  const result = await script(repo, 'finish.ts', ['clean']);
  assert.is(result.exitCode, 0, result.stderr);
  assert.match(result.stderr, 'merge');
});

finish('an unknown session is a clear error', async () => {
  const repo = await makeRepo();
  const result = await script(repo, 'finish.ts', ['nope', '-m', 'x']);
  assert.is(result.exitCode, 1);
  assert.match(result.stderr, 'no session nope');
  assert.match(result.stderr, 'list');
});

finish('once its branch is merged and deleted, a finished session is only a record: clean drops it, and its name starts afresh', async () => {
  const repo = await makeRepo();
  await session(repo, 'done');
  await session(repo, 'again');
  for (const name of ['done', 'again']) assert.is((await script(repo, 'finish.ts', [name])).exitCode, 0);
  await repo.git(['branch', '-D', 'para/done']);
  const cleaned = await script(repo, 'clean.ts', ['--json']);
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  assert.ok((JSON.parse(cleaned.stdout).finished as string[]).includes('done'), cleaned.stdout);
  assert.not.ok((await listJson(repo)).sessions.some((s) => s.name === 'done'));
  assert.is((await listJson(repo)).sessions.find((s) => s.name === 'again')?.status, 'finished', 'a finished session with its branch was dropped');
  // Without a clean in between, too.
  await repo.git(['branch', '-D', 'para/again']);
  await session(repo, 'again');
  assert.is((await listJson(repo)).sessions.find((s) => s.name === 'again')?.status, 'active');
});

finish.run();

const cancel = suite('cancel');

cancel.before(image);

cancel('cancel keeps uncommitted work on an archive branch and removes container, worktree and state', async () => {
  const repo = await makeRepo();
  await session(repo, 'wip', 'echo committed > a.txt && git add a.txt && git commit -qm "agent commit" && echo unsaved > b.txt');
  const result = await script(repo, 'cancel.ts', ['wip', '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  const json = JSON.parse(result.stdout);
  assert.match(json.archivedBranch, /^para\/archived\/\d{8}T\d{6}Z\/wip$/);
  assert.is(json.committedUncommittedWork, true);
  assert.is(await repo.git(['show', `${json.archivedBranch}:b.txt`]), 'unsaved');
  assert.is(await repo.git(['show', `${json.archivedBranch}:a.txt`]), 'committed');
  assert.is(await repo.git(['branch', '--list', 'para/wip']), '');
  assert.is(await inspectContainer(containerName(repo.root, 'wip')), undefined);
  assert.not.ok(await fs.pathExists(path.join(repo.root, '.para/worktrees/wip')));
  assert.not.ok(await fs.pathExists(stateFile(repo.root, 'wip')));
  // The name is free again.
  await session(repo, 'wip');
});

cancel.run();

const clean = suite('clean');

clean.before(image);

clean("clean removes only this repository's orphans; another repository's session and unlabelled containers survive", async () => {
  const repo = await makeRepo();
  const other = await makeRepo();
  await session(repo, 'kept');
  await session(other, 'theirs');
  const orphan = uniqueName('para-orphan');
  await strayContainer(orphan, repo.root, 'ghost');
  const unlabelled = uniqueName('not-para');
  await docker(['create', '--name', unlabelled, '--network', 'none', IMAGE, 'true']);
  onCleanup(() => docker(['rm', '-f', unlabelled], { allowFailure: true }));
  // Another repository's orphan: clean run here must not touch it either.
  const foreignOrphan = uniqueName('para-foreign');
  await strayContainer(foreignOrphan, other.root);
  // A volume labelled for this repository whose session is gone, and an unlabelled one.
  const orphanVolume = uniqueName('para-orphan-vol');
  await strayVolume(orphanVolume, repo.root, 'ghost');
  const plainVolume = uniqueName('not-para-vol');
  await docker(['volume', 'create', plainVolume]);
  onCleanup(() => docker(['volume', 'rm', plainVolume], { allowFailure: true }));

  const dry = await script(repo, 'clean.ts', ['--dry-run', '--json']);
  assert.is(dry.exitCode, 0, dry.stderr);
  const plan = JSON.parse(dry.stdout);
  assert.equal(
    plan.containers.map((c: { name: string }) => c.name),
    [orphan],
  );
  assert.equal(plan.volumes, [orphanVolume]);
  assert.ok(await inspectContainer(orphan), 'dry run removed something');

  const real = await script(repo, 'clean.ts', []);
  assert.is(real.exitCode, 0, real.stderr);
  assert.is(await inspectContainer(orphan), undefined);
  assert.ok(await inspectContainer(containerName(repo.root, 'kept')));
  assert.ok(await inspectContainer(containerName(other.root, 'theirs')));
  assert.ok(await inspectContainer(foreignOrphan));
  assert.ok(await inspectContainer(unlabelled));
  const volumes = (await docker(['volume', 'ls', '-q'])).stdout.split('\n');
  assert.not.ok(volumes.includes(orphanVolume), 'the orphan volume survived');
  assert.ok(volumes.includes(plainVolume), 'an unlabelled volume was removed');
  assert.ok(volumes.includes(sessionPaths({ root: repo.root, commonDir: path.join(repo.root, '.git') }, 'kept').volume), 'a live session lost its volume');
});

clean('clean removes a session left half-started by a killed start, and keeps one with work in it', async () => {
  const repo = await makeRepo();
  const head = await repo.git(['rev-parse', 'HEAD']);
  for (const name of ['halfway', 'touched']) {
    const worktree = path.join(repo.root, '.para/worktrees', name);
    await repo.git(['worktree', 'add', '-q', '-b', `para/${name}`, worktree, head]);
    await fs.mkdir(path.dirname(stateFile(repo.root, name)), { recursive: true });
    // pid 2^22+1 is above Linux's pid_max default, so no process has it.
    await fs.writeJson(stateFile(repo.root, name), {
      version: 2,
      name,
      repo: repo.root,
      branch: `para/${name}`,
      baseBranch: 'main',
      baseCommit: head,
      worktree,
      container: null,
      image: null,
      network: null,
      limits: null,
      prompt: null,
      createdAt: new Date().toISOString(),
      status: 'starting',
      pid: 4194305,
      job: null,
    });
  }
  await fs.writeFile(path.join(repo.root, '.para/worktrees/touched/notes.txt'), 'someone wrote here\n');
  const result = await script(repo, 'clean.ts', ['--json']);
  assert.is(result.exitCode, 0, result.stderr);
  assert.equal(JSON.parse(result.stdout).staleStarts, ['halfway']);
  assert.not.ok(await fs.pathExists(stateFile(repo.root, 'halfway')));
  assert.equal(JSON.parse(result.stdout).keptStarts, ['touched']);
  assert.is(await repo.git(['branch', '--list', 'para/halfway']), '');
  assert.ok(await fs.pathExists(path.join(repo.root, '.para/worktrees/touched/notes.txt')), 'work was deleted');
  assert.ok(await fs.pathExists(stateFile(repo.root, 'touched')));
});

clean.run();

const ownership = suite('files the agent writes');

ownership.before(image);

ownership('belong to the host user (or the unprivileged UID a root host maps to)', async () => {
  const repo = await makeRepo();
  await session(repo, 'owner', 'echo x > owned.txt');
  const stat = await fs.stat(path.join(repo.root, '.para/worktrees/owner/owned.txt'));
  assert.is(stat.uid, imageUserIds().uid);
  assert.is(stat.gid, imageUserIds().gid);
});

ownership.run();

const bundle = suite('the prebuilt bundles that make start and friends run');

bundle.before(image);

bundle('make build produces bundles that run a session like the scripts do', async () => {
  const built = await execa('make', ['-s', 'dist/start.mjs', 'dist/list.mjs'], { cwd: PROJECT_ROOT, reject: false });
  assert.is(built.exitCode, 0, built.stderr);
  const repo = await makeRepo();
  const env = { ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` };
  const started = await execa(
    process.execPath,
    [path.join(PROJECT_ROOT, 'dist/start.mjs'), 'bundled', '--container', '--detach', '--network', 'none', '--image', IMAGE, '--json', '--', 'true'],
    { cwd: repo.root, env, reject: false },
  );
  assert.is(started.exitCode, 0, started.stderr);
  assert.is(JSON.parse(started.stdout).name, 'bundled');
  const listed = await execa(process.execPath, [path.join(PROJECT_ROOT, 'dist/list.mjs'), '--json'], { cwd: repo.root, env, reject: false });
  assert.equal(
    JSON.parse(listed.stdout).sessions.map((s: { name: string }) => s.name),
    ['bundled'],
  );
});

bundle.run();

const json = suite('--json from every script');

json.before(image);

json('every script prints one JSON document whose ok matches its exit code, on success and on failure', async () => {
  const repo = await makeRepo();
  const outside = await tempDir('para-test-norepo-');
  const cases: Array<[string, string[], 'repo' | 'outside']> = [
    ['start.ts', ['js', '--container', '--detach', '--network', 'none', '--image', IMAGE, '--json', '--', 'sh', '-c', 'echo hi'], 'repo'],
    ['start.ts', ['bad/name', '--json'], 'repo'],
    ['logs.ts', ['js', '--json'], 'repo'],
    ['logs.ts', ['nope', '--json'], 'repo'],
    ['sync.ts', ['js', '--json'], 'repo'],
    ['sync.ts', ['nope', '--json'], 'repo'],
    ['list.ts', ['--json'], 'repo'],
    ['list.ts', ['--json'], 'outside'],
    ['clean.ts', ['--dry-run', '--json'], 'repo'],
    ['clean.ts', ['--json'], 'outside'],
    ['finish.ts', ['nope', '--json'], 'repo'],
    ['cancel.ts', ['nope', '--json'], 'repo'],
    ['doctor.ts', ['--json', '--image', `para-missing-${RUN_ID}:none`], 'repo'],
    ['build-image.ts', ['--json', '--token-file', path.join(outside, 'no-such-token')], 'outside'],
    ['login.ts', ['--json'], 'outside'],
    ['finish.ts', ['js', '--json'], 'repo'],
    ['cancel.ts', ['js', '--force', '--json'], 'repo'],
  ];
  const seen = new Set<string>();
  for (const [name, args, where] of cases) {
    const result = await runScript(name, args, {
      cwd: where === 'repo' ? repo.root : outside,
      env: { ...repo.env, GIT_CEILING_DIRECTORIES: path.dirname(outside) },
    });
    let document: { ok?: unknown };
    try {
      document = JSON.parse(result.stdout);
    } catch {
      throw new Error(`${name} ${args.join(' ')} printed no JSON document (exit ${result.exitCode}):\n${result.stdout}\n${result.stderr}`);
    }
    assert.is(document.ok, result.exitCode === 0, `${name} ${args.join(' ')}: ok ${String(document.ok)}, exit ${result.exitCode}\n${result.stderr}`);
    seen.add(`${name}:${result.exitCode === 0 ? 'ok' : 'failed'}`);
  }
  for (const name of ['start.ts', 'logs.ts', 'sync.ts', 'list.ts', 'clean.ts', 'finish.ts', 'cancel.ts']) {
    assert.ok(seen.has(`${name}:ok`) && seen.has(`${name}:failed`), `${name} was not seen both succeeding and failing`);
  }
});

json.run();

const orphans = suite('one truth about orphans: what the doctor reports, its fix removes');

orphans.before(image);

orphans("each kind of orphan is reported by list and the doctor, and following the doctor's fix leaves it clean", async () => {
  const { runDoctorJson } = await import('./support/doctor.ts');
  const repo = await makeRepo();
  await session(repo, 'gone');
  await session(repo, 'stays');
  await docker(['rm', '-f', containerName(repo.root, 'gone')]);
  const ghost = containerName(repo.root, 'ghost');
  await strayContainer(ghost, repo.root, 'ghost');
  const ghostVolume = `${ghost}-git`;
  await strayVolume(ghostVolume, repo.root, 'ghost');
  const doctor = async () => (await runDoctorJson(['--image', IMAGE], { cwd: repo.root, env: repo.env })).check('sessions');
  const before = await doctor();
  assert.is(before.status, 'warn', before.message);
  assert.ok(before.message.includes(ghost) && before.message.includes(ghostVolume) && before.message.includes('gone'), before.message);
  const listed = await listJson(repo);
  assert.equal(
    listed.orphanContainers.map((c) => c.name),
    [ghost],
  );
  assert.is(listed.sessions.find((s) => s.name === 'gone')?.orphan, 'no-container');
  // The fix, as the doctor words it: clean for what belongs to no session, start again for a session without its container.
  assert.match(before.fix ?? '', /clean/);
  assert.match(before.fix ?? '', /start/);
  assert.is((await script(repo, 'clean.ts', [])).exitCode, 0);
  const resumed = await script(repo, 'start.ts', ['gone', '--container', '--detach', '--image', IMAGE]);
  assert.is(resumed.exitCode, 0, resumed.stderr);
  const after = await doctor();
  assert.is(after.status, 'ok', after.message);
});

orphans.run();
