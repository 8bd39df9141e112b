// Many sessions at once: what each agent is doing (the real claude CLI against a fake Messages API
// in its container, through para's hooks), list and watch showing it, a hook's garbage shown as
// unknown, notifications reaching PARA_NOTIFY_COMMAND, merge (commits, squash, uncommitted files,
// a conflict, a dirty checkout), and twelve sessions started in parallel, each listed.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { docker } from '../scripts/lib/engine/docker.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';
import { waitUntil } from './support/engine.ts';
import { detachedArgs, runScript, scriptCommand, SESSION_IMAGE, sessionTestImage, testEgressImage } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { onCleanup, TEST_LABEL, RUN_ID, tempDir } from './support/resources.ts';
import { inTmux } from './support/tmux.ts';

const FAKE_API = path.join(import.meta.dirname, 'support', 'fake-messages.pl');

function para(repo: TestRepo, script: string, args: string[], env: Record<string, string> = {}) {
  return runScript(script, args, { cwd: repo.root, env: { ...repo.env, ...env } });
}

function containerOf(repo: TestRepo, name: string): string {
  return sessionPaths({ root: repo.root, commonDir: '' }, name).container;
}

async function agent(repo: TestRepo, name: string, command: string): Promise<void> {
  const result = await docker(['exec', '-u', 'para', containerOf(repo, name), 'sh', '-c', `cd "$PARA_WORK_TREE" && ${command}`], { allowFailure: true });
  assert.is(result.exitCode, 0, `${result.stdout}\n${result.stderr}`);
}

type Listed = {
  sessions: Array<{
    name: string;
    containerState: string;
    uncommittedChanges: boolean | null;
    activity: { state: string; source: string } | null;
    job: unknown;
  }>;
};

async function listed(repo: TestRepo): Promise<Listed> {
  const result = await para(repo, 'list.ts', ['--json']);
  assert.is(result.exitCode, 0, result.stderr);
  return JSON.parse(result.stdout) as Listed;
}

async function watchedState(repo: TestRepo, name: string): Promise<string | undefined> {
  const result = await para(repo, 'watch.ts', ['--once', '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  return (JSON.parse(result.stdout) as { sessions: Array<{ name: string; state: string }> }).sessions.find((s) => s.name === name)?.state;
}

async function stateOf(repo: TestRepo, name: string): Promise<string | undefined> {
  return (await listed(repo)).sessions.find((s) => s.name === name)?.activity?.state;
}

const many = suite('many sessions');

many.before(async () => {
  await Promise.all([sessionTestImage(), testEgressImage()]);
});

many('the real claude asks for a permission (waiting), works (working) and ends its turn (done): list and watch show each in turn', async () => {
  const repo = await makeRepo();
  const started = await para(repo, 'start.ts', detachedArgs('states', SESSION_IMAGE, '--ask'));
  assert.is(started.exitCode, 0, started.stderr);
  const container = containerOf(repo, 'states');
  assert.is(await stateOf(repo, 'states'), 'idle', 'a session where claude has not run yet is idle');
  // The fake API on the container's loopback, and claude pointed at it (the image's own login is kept).
  await docker(['cp', FAKE_API, `${container}:/tmp/fake-messages.pl`]);
  await docker(['exec', '-d', '-u', 'para', container, 'sh', '-c', 'perl /tmp/fake-messages.pl 4599 10 > /tmp/fake-messages.log 2>&1']);
  const settings = { env: { ANTHROPIC_BASE_URL: 'http://127.0.0.1:4599', CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1' } };
  await docker(['exec', '-u', 'para', '-i', container, 'sh', '-c', 'mkdir -p ~/.claude && cat > ~/.claude/settings.json'], { input: JSON.stringify(settings) });
  const pane = await inTmux(repo.root, repo.env, ['states', '--container', '--ask', '-p', 'PARA-STATE-TEST make a file']);
  await waitUntil('claude to ask for the permission (waiting)', async () => (await stateOf(repo, 'states')) === 'waiting', 90_000);
  assert.match(await pane.screen(), 'Do you want to proceed?');
  assert.is(await watchedState(repo, 'states'), 'waiting');
  const table = await para(repo, 'list.ts', []);
  assert.match(table.stdout, /^waiting \S+\s+states\s+active/m, table.stdout);
  await pane.keys('Enter');
  await waitUntil('the tool to run and claude to go on (working)', async () => (await stateOf(repo, 'states')) === 'working', 60_000);
  assert.is(await watchedState(repo, 'states'), 'working');
  await waitUntil('claude to end its turn (done)', async () => (await stateOf(repo, 'states')) === 'done', 60_000);
  assert.is(await watchedState(repo, 'states'), 'done');
  const session = (await listed(repo)).sessions.find((s) => s.name === 'states');
  assert.is(session?.uncommittedChanges, true, 'the tool made a file');
  assert.match(String((await docker(['exec', container, 'cat', '/tmp/fake-messages.log'])).stdout), 'POST /v1/messages');
  await pane.end();

  // The hook's file is the agent's: garbage and escape codes are shown as unknown, never raw, and
  // the agent's part cannot say anything about the job (para's part is root's).
  await agent(repo, 'states', `printf '\\033]0;owned\\007Stop 12 x | job=exit:0\\n' > ~/.claude/para-state`);
  await waitUntil('the garbled report to be read', async () => (await stateOf(repo, 'states')) === 'unknown', 30_000);
  const raw = await para(repo, 'list.ts', ['--json']);
  const watched = await para(repo, 'watch.ts', ['--once']);
  assert.not.match(raw.stdout + watched.stdout + watched.stderr, '\x1b');
  const again = (await listed(repo)).sessions.find((s) => s.name === 'states');
  assert.is(again?.job, null, 'the agent forged no job');
  await agent(repo, 'states', `printf 'Elicitation 99999999999 \\n' > ~/.claude/para-state`);
  await waitUntil('a valid event to be read again', async () => (await stateOf(repo, 'states')) === 'waiting', 30_000);
});

many('a job ending and a session waiting reach PARA_NOTIFY_COMMAND with the session and the state; watch prints a line per change', async () => {
  const repo = await makeRepo();
  const record = path.join(await tempDir(), 'notified.txt');
  const notify = path.join(path.dirname(record), 'notify.sh');
  await fs.writeFile(notify, `#!/bin/sh\nprintf '%s|%s|%s\\n' "$1" "$2" "$#" >> '${record}'\n`, { mode: 0o755 });
  for (const [name, code] of [
    ['fails', 3],
    ['works', 0],
  ] as const) {
    const started = await para(repo, 'start.ts', detachedArgs(name, SESSION_IMAGE, '--', 'sh', '-c', `sleep 25; exit ${code}`));
    assert.is(started.exitCode, 0, started.stderr);
  }
  const asked = await para(repo, 'start.ts', detachedArgs('asks', SESSION_IMAGE, '--', 'sleep', '600'));
  assert.is(asked.exitCode, 0, asked.stderr);
  const [command, ...entry] = scriptCommand('watch');
  const watch = execa(command, [...entry, '--interval', '1'], {
    cwd: repo.root,
    env: { ...repo.env, PARA_NOTIFY_COMMAND: notify, PARA_NOTIFY_DESKTOP: '0', PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
    stdin: 'ignore',
    reject: false,
  });
  onCleanup(async () => watch.kill());
  // watch's first look sees the jobs running and the third session idle (it tells nothing on a first look).
  let seen = '';
  watch.stdout?.on('data', (chunk: Buffer) => {
    seen += chunk.toString();
  });
  await waitUntil('watch to take its first look', async () => /asks/.test(seen) && /fails .*running/.test(seen), 60_000);
  // A session starts waiting for you (its hook's word, as claude's hook would write it).
  await agent(repo, 'asks', `printf 'PermissionRequest %s \\n' "$(date +%s)" > ~/.claude/para-state`);
  await waitUntil(
    'three notifications',
    async () => (await fs.readFile(record, 'utf8').catch(() => '')).trim().split('\n').filter(Boolean).length >= 3,
    60_000,
  );
  watch.kill();
  await watch;
  const output = seen;
  const notices = (await fs.readFile(record, 'utf8')).trim().split('\n').sort();
  assert.equal(notices, ['asks|waiting|2', 'fails|failed|2', 'works|done|2']);
  assert.match(output, /fails .*exit 3/);
  assert.match(output, /works .*exit 0/);
  assert.match(output, /^\S+Z waiting \S+\s+asks/m);
});

many('watch in a terminal: the rows in place, d shows the diff and a key comes back, q quits; what the agent wrote stays escaped', async () => {
  const repo = await makeRepo();
  const started = await para(repo, 'start.ts', detachedArgs('seen', SESSION_IMAGE, '--', 'sleep', '600'));
  assert.is(started.exitCode, 0, started.stderr);
  await agent(repo, 'seen', `printf 'hello\\n' > "$(printf 'bell\\007name.txt')" && echo two > two.txt && git add -A && git commit -qm "two files"`);
  const pane = await inTmux(repo.root, repo.env, ['--interval', '1'], 'watch');
  await waitUntil('watch to show the session ahead by one', async () => /seen\s+1\s+0\s+no/.test(await pane.screen()), 60_000);
  const screen = await pane.screen();
  assert.match(screen, 'para watch: 1 session');
  assert.match(screen, /^working \S+\s+seen/m, 'a running job is working');
  assert.match(screen, 'a attach  l logs  d diff  f finish');
  await pane.keys('d');
  await waitUntil('the diff', async () => (await pane.screen()).includes('press any key to go back'), 60_000);
  const diff = await pane.screen();
  assert.match(diff, '+two');
  assert.match(diff, /bell\\(x07|007|a)name\.txt/, 'the file name is shown escaped');
  await pane.keys('x');
  await waitUntil('watch again', async () => (await pane.screen()).includes('para watch: 1 session'), 30_000);
  await pane.keys('q');
  await waitUntil('watch to quit', async () => (await pane.screen()).includes('para-exit=0'), 30_000);
});

many(
  'merge: commits come in, uncommitted files are named not taken, --squash makes one commit, a conflict stops as git does, a dirty checkout is refused',
  async () => {
    const repo = await makeRepo();
    for (const name of ['one', 'clash', 'squashed']) {
      const started = await para(repo, 'start.ts', detachedArgs(name, SESSION_IMAGE, '--', 'sleep', '600'));
      assert.is(started.exitCode, 0, started.stderr);
    }
    await agent(repo, 'one', 'echo one > one.txt && git add one.txt && git commit -qm "add one" && echo wip > wip.txt');
    await agent(repo, 'clash', 'echo "agent line" > README.md && git commit -qam "agent README"');
    await agent(repo, 'squashed', 'echo a > a.txt && git add a.txt && git commit -qm a && echo b > b.txt && git add b.txt && git commit -qm b');
    const refsBefore = await repo.git(['for-each-ref', '--format=%(refname) %(objectname)', 'refs/tags', 'refs/heads/main']);

    // A checkout with changes is refused, and nothing moves.
    await fs.appendFile(path.join(repo.root, 'README.md'), 'host edit\n');
    const dirty = await para(repo, 'merge.ts', ['one', '--json']);
    assert.is.not(dirty.exitCode, 0);
    assert.is(JSON.parse(dirty.stdout).error.code, 'checkout-dirty');
    assert.is(await repo.git(['for-each-ref', '--format=%(refname) %(objectname)', 'refs/tags', 'refs/heads/main']), refsBefore);
    await repo.git(['checkout', '--', 'README.md']);

    // What was reviewed, by id: a merge that expects another commit is refused.
    const reviewed = await para(repo, 'diff.ts', ['one', '--stat']);
    const expect = /--expect ([0-9a-f]{12})/.exec(reviewed.stderr)?.[1];
    assert.ok(expect, reviewed.stderr);
    const moved = await para(repo, 'merge.ts', ['one', '--expect', '0000000', '--json']);
    assert.is(JSON.parse(moved.stdout).error.code, 'branch-moved');
    const merged = await para(repo, 'merge.ts', ['one', '--expect', expect!]);
    assert.is(merged.exitCode, 0, merged.stderr);
    assert.match(merged.stderr, 'uncommitted files');
    assert.match(merged.stderr, /merged para\/one into main \(1 commit\)/);
    assert.ok(await fs.pathExists(path.join(repo.root, 'one.txt')));
    assert.not.ok(await fs.pathExists(path.join(repo.root, 'wip.txt')), 'uncommitted work is not merged');
    assert.is(await repo.git(['log', '-1', '--format=%s', 'main']), 'add one');

    // A conflict: git's own state is left, with how to go on or abort.
    await fs.writeFile(path.join(repo.root, 'README.md'), 'host line\n');
    await repo.git(['commit', '-qam', 'host README']);
    const clash = await para(repo, 'merge.ts', ['clash']);
    assert.is(clash.exitCode, 1, clash.stderr);
    assert.match(clash.stderr, 'stopped on conflicts in:\n  README.md');
    assert.match(clash.stderr, 'git merge --abort');
    assert.ok(await fs.pathExists(path.join(repo.root, '.git', 'MERGE_HEAD')));
    assert.match(await fs.readFile(path.join(repo.root, 'README.md'), 'utf8'), '<<<<<<<');
    const again = await para(repo, 'merge.ts', ['squashed', '--json']);
    assert.is(JSON.parse(again.stdout).error.code, 'checkout-dirty', 'a merge in progress is not merged over');
    await repo.git(['merge', '--abort']);
    assert.is(await repo.git(['status', '--porcelain', '--untracked-files=no']), '');

    // --squash --into from another branch: one commit on main, the checkout switched to it, --finish finishes.
    await repo.git(['switch', '-q', '-c', 'elsewhere']);
    const squashed = await para(repo, 'merge.ts', ['squashed', '--squash', '--into', 'main', '--finish', '--json']);
    assert.is(squashed.exitCode, 0, squashed.stderr);
    const result = JSON.parse(squashed.stdout) as { outcome: string; commits: number; head: string; finished: boolean; warnings: string[] };
    assert.is(result.outcome, 'merged');
    assert.is(result.commits, 2);
    assert.is(result.finished, true);
    assert.match(result.warnings.join('\n'), 'switched');
    assert.is(await repo.git(['branch', '--show-current']), 'main');
    assert.is(await repo.git(['rev-parse', 'main']), result.head);
    assert.is((await repo.git(['rev-list', '--parents', '-n', '1', 'main'])).split(' ').length, 2, 'one commit with one parent');
    assert.equal((await repo.git(['diff', '--name-only', 'main^', 'main'])).split('\n'), ['a.txt', 'b.txt']);
    assert.is(await repo.git(['log', '-1', '--format=%s', 'main']), 'Session squashed (para/squashed): 2 commits squashed');
    assert.is((await listed(repo)).sessions.find((s) => s.name === 'squashed')?.containerState, 'none');
    const upToDate = await para(repo, 'merge.ts', ['one', '--json']);
    assert.is(JSON.parse(upToDate.stdout).outcome, 'up-to-date');
    // Nothing outside para/ moved but main (and the branch made by the test).
    const heads = (await repo.git(['for-each-ref', '--format=%(refname)', 'refs/heads'])).split('\n');
    assert.equal(
      heads.filter((ref) => !ref.startsWith('refs/heads/para/')),
      ['refs/heads/elsewhere', 'refs/heads/main'],
    );
  },
);

many("a status line about an earlier job is not the new one's; a report the agent hangs does not hold back the job's state", async () => {
  const repo = await makeRepo();
  const started = await para(repo, 'start.ts', detachedArgs('jobs', SESSION_IMAGE, '--', 'true'));
  assert.is(started.exitCode, 0, started.stderr);
  const jobOf = async () => (await listed(repo)).sessions.find((s) => s.name === 'jobs')?.job as { state: string; exitCode: number | null } | undefined;
  await waitUntil('the first job to exit 0', async () => (await jobOf())?.state === 'exited', 30_000);
  // A second job right away: the container's last line still says exit 0 (of the first one).
  const again = await para(repo, 'start.ts', ['jobs', '--container', '--detach', '--', 'sh', '-c', 'sleep 6; exit 5']);
  assert.is(again.exitCode, 0, again.stderr);
  const second = await jobOf();
  assert.is(second?.state, 'running', JSON.stringify(second));
  assert.is(second?.exitCode, null);
  // The agent makes its git index a FIFO: its report (git status) hangs until its own time-out.
  await agent(
    repo,
    'jobs',
    'g=$(git rev-parse --absolute-git-dir) && mv "$g/index" "$g/index.real" && mkfifo "$g/index" && printf "Stop %s \\n" "$(date +%s)" > ~/.claude/para-state',
  );
  const startedAt = Date.now();
  await waitUntil('the second job to exit 5', async () => (await jobOf())?.exitCode === 5, 60_000);
  // The job ends 6 s after it started; a loop that waited for the hung report would say so only after git's time-out (20 s).
  assert.ok(Date.now() - startedAt < 16_000, `the exit was seen after ${Date.now() - startedAt} ms`);
});

many('merge compares with where the branches meet: a branch that quietly reverts your later allowlist change is refused', async () => {
  const repo = await makeRepo();
  await fs.outputFile(path.join(repo.root, '.para', 'allowed-hosts'), 'api.example.com\n*.evil.test\n');
  await repo.git(['add', '.para/allowed-hosts']);
  await repo.git(['commit', '-qm', 'hosts']);
  const started = await para(repo, 'start.ts', detachedArgs('sly', SESSION_IMAGE, '--', 'sleep', '600'));
  assert.is(started.exitCode, 0, started.stderr);
  // You narrow the list after the session started.
  await fs.writeFile(path.join(repo.root, '.para', 'allowed-hosts'), 'api.example.com\n');
  await repo.git(['commit', '-qam', 'narrow the hosts']);
  const narrowed = await repo.git(['rev-parse', 'HEAD']);
  // The agent reads your new commit from the objects it borrows and builds on it, with the old list back.
  await agent(
    repo,
    'sly',
    `git cat-file -e ${narrowed} && git read-tree ${narrowed} && printf 'api.example.com\\n*.evil.test\\n' > .para/allowed-hosts && echo feature > feature.txt && git add .para/allowed-hosts feature.txt && c=$(git commit-tree $(git write-tree) -p ${narrowed} -m feature) && git update-ref refs/heads/para/sly $c && git reset -q --hard $c`,
  );
  const diff = await para(repo, 'diff.ts', ['sly', '--stat']);
  assert.match(diff.stderr, 'would also change ".para/allowed-hosts"', diff.stderr);
  const refused = await para(repo, 'merge.ts', ['sly', '--json']);
  assert.is.not(refused.exitCode, 0);
  assert.is(JSON.parse(refused.stdout).error.code, 'merge-changes-allowlist');
  assert.is(await repo.git(['rev-parse', 'main']), narrowed, 'nothing was merged');
  const consented = await para(repo, 'merge.ts', ['sly', '--allowlist-change']);
  assert.is(consented.exitCode, 0, consented.stderr);
  assert.match(consented.stderr, 'changes .para/allowed-hosts');
});

many('finish: committed work needs no message; its hint says whether the branch is still to merge, already merged, or empty', async () => {
  const repo = await makeRepo();
  for (const name of ['kept', 'taken', 'idle']) {
    const started = await para(repo, 'start.ts', detachedArgs(name, SESSION_IMAGE, '--', 'sleep', '600'));
    assert.is(started.exitCode, 0, started.stderr);
  }
  await agent(repo, 'kept', 'echo k > k.txt && git add k.txt && git commit -qm k');
  await agent(repo, 'taken', 'echo t > t.txt && git add t.txt && git commit -qm t');
  // No list or sync ran since the agent committed: finish still sees nothing uncommitted.
  const kept = await para(repo, 'finish.ts', ['kept', '--json']);
  assert.is(kept.exitCode, 0, kept.stderr);
  assert.equal(JSON.parse(kept.stdout).mergeState, 'to-merge');
  assert.match(JSON.parse(kept.stdout).mergeHint, /merge\S* kept \(or: git switch main && git merge para\/kept\)/);
  const merged = await para(repo, 'merge.ts', ['taken']);
  assert.is(merged.exitCode, 0, merged.stderr);
  const taken = await para(repo, 'finish.ts', ['taken']);
  assert.is(taken.exitCode, 0, taken.stderr);
  assert.match(taken.stderr, 'already merged; delete the branch: git branch -d para/taken');
  const idle = await para(repo, 'finish.ts', ['idle', '--json']);
  assert.equal(JSON.parse(idle.stdout).mergeState, 'empty');
});

many('twelve sessions started in parallel are each listed, with their state', async () => {
  const repo = await makeRepo();
  const names = Array.from({ length: 12 }, (_, i) => `many-${String(i).padStart(2, '0')}`);
  const starts = await Promise.all(names.map((name) => para(repo, 'start.ts', [name, '--container', '--detach', '--image', SESSION_IMAGE])));
  // (docker run waits up to PARA_DOCKER_RUN_TIMEOUT_MS, 2 min: twelve starts at once on a busy engine are slow, not stuck.)
  for (const [i, result] of starts.entries()) assert.is(result.exitCode, 0, `${names[i]}: ${result.stderr}`);
  await waitUntil('every session to report', async () => (await listed(repo)).sessions.every((s) => s.activity?.source === 'no agent event yet'), 60_000);
  const view = await listed(repo);
  assert.equal(
    view.sessions.map((s) => s.name),
    names,
  );
  for (const s of view.sessions) {
    assert.is(s.containerState, 'running', s.name);
    assert.is(s.activity?.state, 'idle', s.name);
    assert.is(s.uncommittedChanges, false, s.name);
  }
  const watched = await para(repo, 'watch.ts', ['--once']);
  assert.is(watched.stdout.trim().split('\n').length, 13, watched.stdout);
});

many.run();
