// The boundary between a session container and the host, attacked from inside real containers
// as the agent user, with the real git. After every attack: host refs outside para/ unchanged,
// git fsck clean, no planted code run on the host (marker files absent after git status in the
// main checkout and after every para script), host files intact, nothing the agent made lost.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { labels } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { inspectContainer } from './support/verbs.ts';
import { waitUntil } from './support/engine.ts';
import { PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { runScript, SESSION_IMAGE, sessionTestImage, type ScriptResult } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { RUN_ID, TEST_LABEL, onCleanup, tempDir, uniqueName } from './support/resources.ts';

const IMAGE = SESSION_IMAGE;
const image = sessionTestImage;

interface Target {
  repo: TestRepo;
  /** A host folder the agent cannot see: planted code would leave files here. */
  markers: string;
  victim: string;
  refsBefore: string;
}

/** Host refs outside para/, HEAD and the git folder's config, as one comparable text. */
async function hostRefs(repo: TestRepo): Promise<string> {
  const refs = (await repo.git(['for-each-ref', '--format=%(refname) %(objectname)'])).split('\n').filter((line) => !line.startsWith('refs/heads/para/'));
  const head = await fs.readFile(path.join(repo.root, '.git', 'HEAD'), 'utf8');
  const config = await fs.readFile(path.join(repo.root, '.git', 'config'), 'utf8');
  const hooks = (await fs.readdir(path.join(repo.root, '.git', 'hooks'))).sort().join(',');
  return [...refs, head, config, hooks].join('\n');
}

/** A repository whose user has a filter driver in their global git config (as git-lfs users do). */
async function target(): Promise<Target> {
  const repo = await makeRepo();
  const markers = await tempDir('para-test-markers-');
  const global = repo.env.GIT_CONFIG_GLOBAL;
  await fs.appendFile(
    global,
    `[filter "evil"]\n\tclean = touch ${markers}/filter-ran; cat\n\tsmudge = cat\n[diff "evil"]\n\ttextconv = touch ${markers}/textconv-ran; cat\n`,
  );
  const victim = path.join(await tempDir('para-test-victim-'), 'victim.txt');
  await fs.writeFile(victim, 'the host file\n');
  await repo.git(['commit', '-q', '--allow-empty', '-m', 'second']);
  await repo.git(['branch', 'release']);
  await repo.git(['tag', 'v1']);
  return { repo, markers, victim, refsBefore: await hostRefs(repo) };
}

function script(t: Target, name: string, args: string[]): Promise<ScriptResult> {
  return runScript(name, args, { cwd: t.repo.root, env: t.repo.env });
}

async function startAttack(t: Target, name: string, body: string, extra: string[] = []): Promise<void> {
  const started = await script(t, 'start.ts', [name, '--container', '--detach', '--network', 'none', '--image', IMAGE, ...extra, '--', 'sh', '-c', body]);
  assert.is(started.exitCode, 0, started.stderr);
  const follow = await script(t, 'logs.ts', [name, '-f']);
  assert.is(follow.exitCode, 0, `the attack of ${name} failed to run: ${follow.stdout}\n${follow.stderr}`);
}

/** The checks that follow every attack. */
async function hostIntact(t: Target): Promise<void> {
  // A plain git status in the user's own checkout, with the user's own config.
  await execa('git', ['status'], { cwd: t.repo.root, env: t.repo.env });
  await execa('git', ['diff', 'HEAD'], { cwd: t.repo.root, env: t.repo.env });
  assert.equal(await fs.readdir(t.markers), [], 'planted code ran on the host');
  assert.is(await hostRefs(t.repo), t.refsBefore, 'a host ref outside para/ (or HEAD, config, hooks) changed');
  const fsck = await execa('git', ['fsck', '--no-progress', '--strict'], { cwd: t.repo.root, env: t.repo.env, reject: false });
  assert.is(fsck.exitCode, 0, fsck.stderr);
  assert.is(await fs.readFile(t.victim, 'utf8'), 'the host file\n', 'a host file was changed');
}

const attack = suite('attacks from inside a session container');

attack.before(image);

/** Planted hooks, fsmonitor, commondir and a .git in the folder, then every para script; under `runtime` when given. */
async function plantedCodeAttack(runtime?: string): Promise<void> {
  const t = await target();
  const m = t.markers;
  await startAttack(
    t,
    'hooks',
    [
      // The agent's own repository: hooks and config run only inside (the host never uses them).
      `git config core.fsmonitor "touch ${m}/fsmonitor-agent-repo; false"`,
      `git config core.hooksPath "$(git rev-parse --absolute-git-dir)/hooks"`,
      `printf '#!/bin/sh\\ntouch ${m}/post-commit\\n' > "$(git rev-parse --absolute-git-dir)/hooks/post-commit"`,
      `chmod +x "$(git rev-parse --absolute-git-dir)/hooks/post-commit"`,
      'echo agent > file.txt && git add file.txt && git commit -qm "agent work"',
      // A repository planted in the folder, with config that runs code wherever git opens it.
      'mkdir -p .git/objects .git/refs/heads .git/hooks',
      'echo "ref: refs/heads/main" > .git/HEAD',
      `printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = "touch ${m}/fsmonitor-planted; false"\\n\\thooksPath = .git/hooks\\n' > .git/config`,
      `printf '#!/bin/sh\\ntouch ${m}/planted-hook\\n' > .git/hooks/post-commit && chmod +x .git/hooks/post-commit`,
      `echo "${m}/evil" > .git/commondir`,
      // Attributes naming the user's own filter and diff drivers.
      'printf "* filter=evil diff=evil\\n" > .gitattributes',
      'echo uncommitted > wip.txt',
    ].join(' && '),
    runtime ? ['--runtime', runtime] : [],
  );
  if (runtime) {
    const container = JSON.parse((await script(t, 'list.ts', ['--json'])).stdout).sessions[0].container as string;
    assert.is((await docker(['inspect', '--format', '{{.HostConfig.Runtime}}', container])).stdout.trim(), runtime);
  }
  await hostIntact(t);
  for (const [name, args] of [
    ['list.ts', []],
    ['list.ts', ['--json']],
    ['sync.ts', ['hooks']],
    ['logs.ts', ['hooks']],
    ['clean.ts', []],
  ] as const) {
    const result = await script(t, name, [...args]);
    assert.is(result.exitCode, 0, `${name}: ${result.stderr}`);
    await hostIntact(t);
  }
  const listed = JSON.parse((await script(t, 'list.ts', ['--json'])).stdout) as { sessions: Array<{ plantedGit: boolean; warnings: string[] }> };
  assert.is(listed.sessions[0].plantedGit, true, 'the planted .git was not reported');
  assert.is(await t.repo.git(['log', '-1', '--format=%s', 'para/hooks']), 'agent work');
  const finished = await script(t, 'finish.ts', ['hooks', '-m', 'finish']);
  assert.is(finished.exitCode, 0, finished.stderr);
  assert.match(finished.stderr, '.git that para did not make');
  await hostIntact(t);
  assert.is(await t.repo.git(['show', 'para/hooks:wip.txt']), 'uncommitted');
  // The folder held the planted .git, so it was kept whole rather than deleted.
  const kept = await fs.readdir(path.join(t.repo.root, '.para', 'kept'));
  assert.is(kept.length, 1);
}

attack('planted hooks, fsmonitor, commondir and a .git in the folder run nothing on the host, through every para script', () => plantedCodeAttack());

attack('the same planted code under gVisor (--runtime runsc) runs nothing on the host either', () => plantedCodeAttack('runsc'));

attack("the agent's ref games stay in its own repository; host refs outside para/ are unchanged", async () => {
  const t = await target();
  const main = await t.repo.git(['rev-parse', 'main']);
  await startAttack(
    t,
    'refs',
    [
      'git commit -q --allow-empty -m "evil main"',
      'git update-ref refs/heads/main HEAD',
      'git update-ref refs/heads/release HEAD',
      'git tag -f v1 HEAD',
      `git replace ${main} HEAD`,
      'git symbolic-ref HEAD refs/heads/main',
      'git update-ref refs/heads/para/other HEAD',
      'git commit -q --allow-empty -m "on main in the agent repo"',
    ].join(' && '),
  );
  for (const name of ['list.ts', 'sync.ts']) await script(t, name, name === 'sync.ts' ? ['refs'] : []);
  await hostIntact(t);
  const cancelled = await script(t, 'cancel.ts', ['refs', '--force', '--json']);
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
  await hostIntact(t);
  const json = JSON.parse(cancelled.stdout) as { archivedBranch: string; savedRefs: string[] };
  // The agent's "main" is kept, but only under para/archived/...
  const saved = json.savedRefs.find((ref) => ref.endsWith('.branches/main'));
  assert.ok(saved, JSON.stringify(json.savedRefs));
  assert.is(await t.repo.git(['log', '-1', '--format=%s', saved]), 'on main in the agent repo');
  assert.ok(
    json.savedRefs.every((ref) => ref.startsWith('para/archived/')),
    JSON.stringify(json.savedRefs),
  );
  assert.is(await t.repo.git(['rev-parse', 'main']), main);
});

attack("objects that fail git's checks are refused and para/NAME does not move", async () => {
  const t = await target();
  await startAttack(
    t,
    'badobj',
    [
      'tree=$(git rev-parse "HEAD^{tree}")',
      'bad=$(printf "tree %s\\nparent %s\\nauthor bad <a@b> notatime\\ncommitter x <x@y> 1 +0000\\n\\nbad\\n" "$tree" "$(git rev-parse HEAD)" | git hash-object -t commit -w --literally --stdin)',
      'git update-ref refs/heads/para/badobj "$bad"',
    ].join(' && '),
  );
  const before = await t.repo.git(['rev-parse', 'para/badobj']);
  const synced = await script(t, 'sync.ts', ['badobj']);
  assert.is.not(synced.exitCode, 0, synced.stderr);
  assert.match(synced.stderr, /failed git's checks/);
  assert.is(await t.repo.git(['rev-parse', 'para/badobj']), before);
  await hostIntact(t);
});

attack('symlinks the agent plants are committed as links, never followed: host files are neither read nor written', async () => {
  const t = await target();
  await startAttack(
    t,
    'links',
    [`ln -s ${t.victim} victim-link`, 'ln -s / root-link', `ln -s ${t.victim} output.log`, 'mkdir -p sub && ln -s /etc sub/etc'].join(' && '),
  );
  // A second job in the same session: the output file must not follow the agent's link.
  const again = await script(t, 'start.ts', ['links', '--container', '--detach', '--image', IMAGE, '--', 'sh', '-c', 'echo second job']);
  assert.is(again.exitCode, 0, again.stderr);
  assert.is((await script(t, 'logs.ts', ['links', '-f'])).exitCode, 0);
  // The job's own files are root's: the agent cannot swap them for links.
  const swap = await docker(
    [
      'exec',
      '--user',
      'para',
      sessionPaths({ root: t.repo.root, commonDir: path.join(t.repo.root, '.git') }, 'links').container,
      'sh',
      '-c',
      `ln -sf ${t.victim} /run/para/output.log`,
    ],
    { allowFailure: true },
  );
  assert.is.not(swap.exitCode, 0);
  const finished = await script(t, 'finish.ts', ['links', '-m', 'links']);
  assert.is(finished.exitCode, 0, finished.stderr);
  await hostIntact(t);
  const entry = await t.repo.git(['ls-tree', 'para/links', 'victim-link']);
  assert.match(entry, /^120000 /, 'the link was not stored as a link');
  assert.is(await t.repo.git(['cat-file', '-p', entry.split(/\s+/)[2]]), t.victim);
  assert.not.ok((await t.repo.git(['grep', '-l', 'the host file', 'para/links']).catch(() => '')).length, 'host content entered the branch');
});

attack('cancel keeps everything: commits on the branch, another branch, a detached HEAD, uncommitted and ignored files', async () => {
  const t = await target();
  await startAttack(
    t,
    'keep',
    [
      'echo one > one.txt && git add one.txt && git commit -qm "on the session branch"',
      'git switch -q -c side && echo side > side.txt && git add side.txt && git commit -qm "on a side branch"',
      'git switch -q --detach && echo det > det.txt && git add det.txt && git commit -qm "on a detached HEAD"',
      'echo "*.log" > .gitignore && echo ignored > build.log',
      'echo pending > pending.txt',
    ].join(' && '),
  );
  const result = await script(t, 'cancel.ts', ['keep', '--force', '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  await hostIntact(t);
  const json = JSON.parse(result.stdout) as { archivedBranch: string; savedRefs: string[]; keptFolder: string; uncaptured: string[] };
  const reachable = async (subject: string) => (await t.repo.git(['log', '--format=%s', ...json.savedRefs, json.archivedBranch])).split('\n').includes(subject);
  for (const subject of ['on the session branch', 'on a side branch', 'on a detached HEAD']) assert.ok(await reachable(subject), `${subject} is lost`);
  const wip = json.savedRefs.find((ref) => ref.endsWith('.wip'));
  assert.ok(wip, JSON.stringify(json));
  assert.is(await t.repo.git(['show', `${wip}:pending.txt`]), 'pending');
  assert.is(await t.repo.git(['log', '-1', '--format=%s', `${wip}~1`]), 'on a detached HEAD');
  assert.equal(json.uncaptured, ['build.log']);
  assert.is(await fs.readFile(path.join(json.keptFolder, 'files', 'build.log'), 'utf8'), 'ignored\n');
});

attack('odd refs, nested repositories and files git refuses are kept, and nothing of another host repository is read in', async () => {
  const t = await target();
  const other = await makeRepo();
  await startAttack(
    t,
    'odd',
    [
      'echo a > a.txt && git add a.txt && git commit -qm "on the branch"',
      'git branch "fix#12" && git branch "über" && git branch "a,b"',
      'git tag -a -m inner inner HEAD && git tag -a -m outer outer inner',
      'git tag blobtag "$(echo x | git hash-object -w --stdin)"',
      'echo stashed > a.txt && git stash -q',
      'mkdir app && (cd app && env -u GIT_DIR -u GIT_WORK_TREE git init -q && echo app > app.js && env -u GIT_DIR -u GIT_WORK_TREE git add app.js && env -u GIT_DIR -u GIT_WORK_TREE git -c user.name=a -c user.email=a@b commit -qm app && echo more > more.js)',
      `mkdir leak && echo "gitdir: ${path.join(other.root, '.git')}" > leak/.git`,
    ].join(' && '),
  );
  const result = await script(t, 'cancel.ts', ['odd', '--force', '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  await hostIntact(t);
  const json = JSON.parse(result.stdout) as { archivedBranch: string; savedRefs: string[]; keptFolder: string; uncaptured: string[]; warnings: string[] };
  for (const name of ['fix#12', 'über', 'a,b'])
    assert.ok(
      json.savedRefs.some((ref) => ref.endsWith(`.branches/${name}`)),
      `${name}: ${JSON.stringify(json.savedRefs)}`,
    );
  assert.ok(
    json.savedRefs.some((ref) => ref.endsWith('.tags/outer')),
    JSON.stringify(json.savedRefs),
  );
  assert.ok(
    json.savedRefs.some((ref) => ref.endsWith('.stash')),
    JSON.stringify(json.savedRefs),
  );
  // The tag of a blob cannot be a branch: the whole repository is kept as a tar beside the files.
  assert.match(json.warnings.join('\n'), 'blobtag');
  assert.ok(await fs.pathExists(path.join(json.keptFolder, 'agent-repository.tar')));
  assert.ok(json.uncaptured.includes('app/') && json.uncaptured.includes('leak/'), JSON.stringify(json.uncaptured));
  assert.is(await fs.readFile(path.join(json.keptFolder, 'files', 'app', 'more.js'), 'utf8'), 'more\n');
  for (const ref of [json.archivedBranch, ...json.savedRefs]) {
    const links = (await t.repo.git(['ls-tree', '-r', ref])).split('\n').filter((line) => line.startsWith('160000'));
    assert.equal(links, [], `${ref} records a nested repository`);
  }
  const volumes = (await docker(['volume', 'ls', '-q', '--filter', `label=${labels.repo}=${t.repo.root}`])).stdout.trim();
  assert.is(volumes, '', 'the volume stayed although its repository was saved');
});

attack("uncommitted files that fail git's checks are refused, the folder is kept, and fsck stays clean", async () => {
  const t = await target();
  await startAttack(
    t,
    'badfiles',
    ['printf \'[submodule "x"]\\n\\tpath = x\\n\\turl = --upload-pack=touch\\n\' > .gitmodules', 'echo fine > fine.txt'].join(' && '),
  );
  const result = await script(t, 'finish.ts', ['badfiles', '-m', 'attempt', '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  await hostIntact(t);
  const json = JSON.parse(result.stdout) as { keptFolder: string; warnings: string[]; committed: boolean };
  assert.is(json.committed, false);
  assert.match(json.warnings.join('\n'), /could not be committed/);
  assert.is(await fs.readFile(path.join(json.keptFolder, 'files', 'fine.txt'), 'utf8'), 'fine\n');
});

attack('a repository git cannot read is not taken for an empty one: its commits are kept as a tar', async () => {
  const t = await target();
  await startAttack(
    t,
    'broken',
    [
      'echo c > c.txt && git add c.txt && git commit -qm "made before the damage"',
      'git pack-refs --all',
      'echo "garbage line" >> "$(git rev-parse --absolute-git-dir)/packed-refs"',
    ].join(' && '),
  );
  // list tries to bring the commits back once the session has reported them (its status line, within about 2 s).
  await waitUntil(
    'list to try the damaged repository',
    async () => /could not bring the agent's commits back/.test((await script(t, 'list.ts', [])).stderr),
    30_000,
  );
  const result = await script(t, 'finish.ts', ['broken', '-m', 'the files as they were', '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  const json = JSON.parse(result.stdout) as { keptFolder: string; warnings: string[] };
  // The folder's files are committed as data even though the agent's commits could not be read.
  assert.is(await t.repo.git(['show', 'para/broken:c.txt']), 'c');
  assert.match(json.warnings.join('\n'), /could not be brought back/);
  const tar = path.join(json.keptFolder, 'agent-repository.tar');
  const listing = (await execa('tar', ['-tf', tar])).stdout;
  assert.match(listing, 'repo.git/objects/');
  await hostIntact(t);
});

attack('files git must not open (a FIFO .gitignore, a FIFO, a file over the limit) neither hang nor break finish; the folder is kept', async () => {
  const t = await target();
  await startAttack(
    t,
    'fifo',
    ['mkfifo pipe && mkdir sub && mkfifo sub/.gitignore', 'head -c 3000000 /dev/zero > big.bin', 'echo fine > fine.txt'].join(' && '),
  );
  const result = await runScript('finish.ts', ['fifo', '-m', 'with fifos', '--json'], {
    cwd: t.repo.root,
    env: { ...t.repo.env, PARA_SNAPSHOT_MAX_FILE_MB: '1' },
  });
  assert.is(result.exitCode, 0, result.stderr);
  const json = JSON.parse(result.stdout) as { keptFolder: string; warnings: string[]; committed: boolean };
  // A .gitignore git would block on: the folder is kept whole and nothing of it is read.
  assert.match(json.warnings.join('\n'), /sub\/.gitignore is not a regular file/);
  assert.ok(await fs.pathExists(path.join(json.keptFolder, 'files', 'fine.txt')));
  const inside = (await docker(['ps', '-aq', '--filter', `label=${labels.repo}=${t.repo.root}`])).stdout.trim();
  assert.is(inside, '', 'the container was left behind');
  await hostIntact(t);
});

attack('a FIFO and a file over the limit are left out, the rest is committed; a paused container and a busy agent do not block cancel', async () => {
  const t = await target();
  await startAttack(
    t,
    'busy',
    [
      'mkfifo pipe && head -c 3000000 /dev/zero > big.bin && echo fine > fine.txt',
      'git tag blobtag "$(echo x | git hash-object -w --stdin)"',
      '(while :; do echo more >> /para/session/grow; sleep 0.01; done) >/dev/null 2>&1 &',
    ].join(' && '),
  );
  const container = sessionPaths({ root: t.repo.root, commonDir: path.join(t.repo.root, '.git') }, 'busy').container;
  // As an interrupted finish would leave it.
  await docker(['pause', container]);
  const result = await runScript('cancel.ts', ['busy', '--force', '--json'], { cwd: t.repo.root, env: { ...t.repo.env, PARA_SNAPSHOT_MAX_FILE_MB: '1' } });
  assert.is(result.exitCode, 0, result.stderr);
  const json = JSON.parse(result.stdout) as { archivedBranch: string; savedRefs: string[]; keptFolder: string; uncaptured: string[] };
  const wip = json.savedRefs.find((ref) => ref.endsWith('.wip')) ?? json.archivedBranch;
  assert.is(await t.repo.git(['show', `${wip}:fine.txt`]), 'fine');
  assert.ok(json.uncaptured.includes('pipe') && json.uncaptured.includes('big.bin'), JSON.stringify(json.uncaptured));
  assert.ok(await fs.pathExists(path.join(json.keptFolder, 'agent-repository.tar')));
  await hostIntact(t);
});

attack("more than 100 MB of the agent's work comes back whole", async () => {
  const t = await target();
  await startAttack(t, 'large', 'head -c 110000000 /dev/urandom > large.bin && git add large.bin && git commit -qm large');
  const synced = await script(t, 'sync.ts', ['large']);
  assert.is(synced.exitCode, 0, synced.stderr);
  assert.is(await t.repo.git(['cat-file', '-s', 'para/large:large.bin']), '110000000');
  assert.is((await script(t, 'cancel.ts', ['large', '--force'])).exitCode, 0);
  await hostIntact(t);
});

attack('work heavier than PARA_MAX_BUNDLE_MB is refused, not stored on the host; cancel keeps it in its volume', async () => {
  const t = await target();
  await startAttack(t, 'heavy', 'true');
  // Made after the job, so no para command has synced it yet.
  const container = sessionPaths({ root: t.repo.root, commonDir: path.join(t.repo.root, '.git') }, 'heavy').container;
  await docker(['exec', '--user', 'para', container, 'sh', '-c', 'head -c 3000000 /dev/urandom > heavy.bin && git add heavy.bin && git commit -qm heavy']);
  const env = { ...t.repo.env, PARA_MAX_BUNDLE_MB: '1' };
  const before = await t.repo.git(['rev-parse', 'para/heavy']);
  const synced = await runScript('sync.ts', ['heavy'], { cwd: t.repo.root, env });
  assert.is.not(synced.exitCode, 0);
  assert.match(synced.stderr, 'weigh more than 1 MB');
  assert.is(await t.repo.git(['rev-parse', 'para/heavy']), before);
  const cancelled = await runScript('cancel.ts', ['heavy', '--force', '--json'], { cwd: t.repo.root, env });
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
  const warnings = (JSON.parse(cancelled.stdout) as { warnings: string[] }).warnings.join('\n');
  assert.match(warnings, 'kept in the docker volume');
  await hostIntact(t);
});

attack('state a merge brings in is never read: clean leaves an unrelated container and a non-para branch alone', async () => {
  const t = await target();
  const bystander = uniqueName('bystander');
  await docker(['create', '--network', 'none', '--label', `${TEST_LABEL}=${RUN_ID}`, '--name', bystander, IMAGE, 'true']);
  onCleanup(() => docker(['rm', '-f', bystander], { allowFailure: true }));
  const forged = JSON.stringify({
    version: 2,
    name: 'zz',
    repo: t.repo.root,
    branch: 'release',
    baseCommit: '0'.repeat(40),
    worktree: '/',
    container: bystander,
    status: 'starting',
    pid: 4194305,
  });
  await startAttack(
    t,
    'plant',
    ['mkdir -p .para/state .git-para', `printf '%s' '${forged}' > .para/state/zz.json`, 'git add -f .para && git commit -qm "state for para"'].join(' && '),
  );
  const finished = await script(t, 'finish.ts', ['plant']);
  assert.is(finished.exitCode, 0, finished.stderr);
  await t.repo.git(['merge', '-q', '--no-edit', 'para/plant']);
  t.refsBefore = await hostRefs(t.repo);
  // A damaged state file of para's own is reported, and blocks nothing else.
  const stateDir = path.join(t.repo.root, '.git', 'para', 'sessions');
  await fs.writeFile(path.join(stateDir, 'broken.json'), '{"version":2,"name":"broken","container":"' + bystander + '"}');
  const cleaned = await script(t, 'clean.ts', ['--json']);
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  assert.is(JSON.parse(cleaned.stdout).problems.length, 1);
  assert.ok(await inspectContainer(bystander), 'clean removed an unrelated container');
  assert.ok((await t.repo.git(['branch', '--list', 'release'])).includes('release'), 'clean deleted a non-para branch');
  await hostIntact(t);
});

attack("a folder swap of .git for a gitdir file naming the host repository does not sweep the user's changes into it", async () => {
  const t = await target();
  await fs.writeFile(path.join(t.repo.root, 'README.md'), "the user's own uncommitted edit\n");
  await startAttack(t, 'fallback', [`echo "gitdir: ${path.join(t.repo.root, '.git')}" > .git`, 'echo agent > agent.txt'].join(' && '));
  const head = await t.repo.git(['rev-parse', 'HEAD']);
  const cancelled = await script(t, 'cancel.ts', ['fallback', '--force']);
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
  assert.is(await t.repo.git(['rev-parse', 'HEAD']), head, 'the main branch moved');
  assert.is(await t.repo.git(['status', '--porcelain', '--', 'README.md']), 'M README.md');
  assert.is(await fs.readFile(path.join(t.repo.root, 'README.md'), 'utf8'), "the user's own uncommitted edit\n");
  await hostIntact(t);
});

attack('a container restarted under a running job: list does not say running forever and logs -f ends', async () => {
  const t = await target();
  const started = await script(t, 'start.ts', ['restart', '--container', '--detach', '--network', 'none', '--image', IMAGE, '--', 'sleep', '300']);
  assert.is(started.exitCode, 0, started.stderr);
  const container = sessionPaths({ root: t.repo.root, commonDir: path.join(t.repo.root, '.git') }, 'restart').container;
  const follow = script(t, 'logs.ts', ['restart', '-f']);
  await docker(['restart', '--time', '1', container]);
  const followed = await follow;
  assert.is.not(followed.exitCode, 0);
  assert.match(followed.stderr, /without an exit status/);
  const listed = JSON.parse((await script(t, 'list.ts', ['--json'])).stdout) as { sessions: Array<{ job: { state: string } }> };
  assert.is(listed.sessions[0].job.state, 'lost');
  await docker(['kill', container]);
  const again = JSON.parse((await script(t, 'list.ts', ['--json'])).stdout) as { sessions: Array<{ job: { state: string }; containerState: string }> };
  assert.is(again.sessions[0].job.state, 'lost');
  assert.is(again.sessions[0].containerState, 'exited');
  // The work survives the container too: start re-creates nothing, it restarts it.
  assert.is((await script(t, 'start.ts', ['restart', '--container', '--detach', '--image', IMAGE, '--', 'true'])).exitCode, 0);
  await hostIntact(t);
});

attack('a repository the agent hid (HEAD a dangling link) and gave an fsmonitor: the container restarting runs none of it', async () => {
  const t = await target();
  const body = [
    'cd /para/session/repo.git',
    'git pack-refs --all',
    'ref=$(git symbolic-ref HEAD)',
    'rm HEAD && ln -s "$ref" HEAD',
    'printf "#!/bin/sh\\ntouch /para/session/hook-ran\\n" > /para/session/hook.sh && chmod +x /para/session/hook.sh',
    'git config core.fsmonitor /para/session/hook.sh',
    'git config core.hooksPath /para/session',
  ].join(' && ');
  await startAttack(t, 'hidden', body);
  const container = sessionPaths({ root: t.repo.root, commonDir: path.join(t.repo.root, '.git') }, 'hidden').container;
  await docker(['restart', '--time', '0', container]);
  await script(t, 'start.ts', ['hidden', '--container', '--detach', '--image', IMAGE, '--', 'true']);
  const ran = await docker(['exec', container, 'sh', '-c', 'test -e /para/session/hook-ran && echo ran || echo not; ls /para/session/repo.git | head -3'], {
    allowFailure: true,
  });
  assert.match(ran.stdout, /^not/, `the agent's fsmonitor ran as the container started: ${ran.stdout}`);
  assert.not.match(ran.stdout, 'repo.git.new', "a second repository was moved into the agent's");
  await hostIntact(t);
});

attack.run();

// ---------------------------------------------------------------------------------------------

const edges = suite('bad input at the edges');

edges.before(image);

edges('a repository path with commas, quotes and spaces works', async () => {
  const parent = await tempDir('para-test-odd-');
  const root = path.join(parent, 'my repo, "quoted" \'too\'');
  await fs.mkdir(root);
  const repo = await makeRepo();
  await execa('git', ['clone', '-q', repo.root, root], { env: repo.env });
  const odd: TestRepo = { ...repo, root, git: async (args) => (await execa('git', args, { cwd: root, env: repo.env })).stdout.trim() };
  onCleanup(async () => {
    const ids = (await docker(['ps', '-aq', '--filter', `label=${labels.repo}=${root}`])).stdout.split('\n').filter(Boolean);
    if (ids.length) await docker(['rm', '-f', ...ids], { allowFailure: true });
    const volumes = (await docker(['volume', 'ls', '-q', '--filter', `label=${labels.repo}=${root}`])).stdout.split('\n').filter(Boolean);
    if (volumes.length) await docker(['volume', 'rm', ...volumes], { allowFailure: true });
  });
  const started = await runScript(
    'start.ts',
    ['odd', '--container', '--detach', '--network', 'none', '--image', IMAGE, '--', 'sh', '-c', 'echo x > x.txt && git add x.txt && git commit -qm odd'],
    { cwd: root, env: repo.env },
  );
  assert.is(started.exitCode, 0, started.stderr);
  assert.is((await runScript('logs.ts', ['odd', '-f'], { cwd: root, env: repo.env })).exitCode, 0);
  assert.is((await runScript('sync.ts', ['odd'], { cwd: root, env: repo.env })).exitCode, 0);
  assert.is(await odd.git(['log', '-1', '--format=%s', 'para/odd']), 'odd');
});

edges('make start keeps a prompt with $(shell ...) and $5 byte for byte and runs nothing', async () => {
  const t = await target();
  const marker = path.join(t.markers, 'make-ran');
  const prompt = `$(shell touch ${marker}) costs $5 and \`touch ${marker}\` "quoted"`;
  const result = await execa(
    'make',
    ['-s', '-C', PROJECT_ROOT, 'start', `REPO=${t.repo.root}`, 'NAME=mk', `PROMPT=${prompt}`, 'DETACH=1', `IMAGE=${IMAGE}`, 'NETWORK=none'],
    {
      env: { ...t.repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
      reject: false,
    },
  );
  assert.is(result.exitCode, 0, result.stderr);
  assert.not.ok(await fs.pathExists(marker), 'make or the shell ran the prompt');
  const state = JSON.parse(await fs.readFile(sessionPaths({ root: t.repo.root, commonDir: path.join(t.repo.root, '.git') }, 'mk').stateFile, 'utf8')) as {
    prompt: string;
  };
  assert.is(state.prompt, prompt);
});

edges.run();
