// start.ts on the real engine and real git: sessions in temporary repositories, from one
// authenticated image built by the real build-image.ts from a fake login.
import { execa } from 'execa';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { labels, MANAGED_BY } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { inspectContainer } from './support/verbs.ts';
import { imageUserIds } from '../scripts/lib/image/build.ts';
import { SESSION_NAME_FORM, SESSION_NAME_PATTERN, sessionPaths } from '../scripts/lib/session/paths.ts';
import type { SessionState } from '../scripts/lib/session/store.ts';
import { FAKE_TOKEN, runScript, scriptCommand, SESSION_IMAGE, sessionTestImage, type ScriptResult, detachedArgs } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { RUN_ID, TEST_LABEL, tempDir, trackImage } from './support/resources.ts';
import { HOOK_SETTINGS } from '../scripts/lib/session/request.ts';

const IMAGE = SESSION_IMAGE;
const sessionImage = sessionTestImage;

function start(repo: TestRepo, args: string[], env: Record<string, string> = {}): Promise<ScriptResult> {
  return runScript('start.ts', args, { cwd: repo.root, env: { ...repo.env, ...env } });
}

/** NAME --container --detach on the test image, without a network. */
function detached(name: string, ...rest: string[]): string[] {
  return detachedArgs(name, IMAGE, ...rest);
}

function paths(repo: TestRepo, name: string) {
  const p = sessionPaths({ root: repo.root, commonDir: path.join(repo.root, '.git') }, name);
  return { worktree: p.worktree, state: p.stateFile, volume: p.volume, container: p.container };
}

async function readState(repo: TestRepo, name: string): Promise<SessionState> {
  return JSON.parse(await fs.readFile(paths(repo, name).state, 'utf8')) as SessionState;
}

/** Container ids labelled for this repository (and session, when given), running or not. */
async function containers(repo: TestRepo, session?: string): Promise<string[]> {
  const args = ['ps', '-aq', '--no-trunc', '--filter', `label=${labels.repo}=${repo.root}`];
  if (session !== undefined) args.push('--filter', `label=${labels.session}=${session}`);
  return (await docker(args)).stdout.split('\n').filter(Boolean);
}

async function branches(repo: TestRepo, pattern = 'para/*'): Promise<string[]> {
  return (await repo.git(['branch', '--list', '--format=%(refname:short)', pattern])).split('\n').filter(Boolean).sort();
}

/** What a session of this name left behind; [] when nothing. */
async function leftovers(repo: TestRepo, name: string): Promise<string[]> {
  const found: string[] = [];
  const p = paths(repo, name);
  if ((await branches(repo, `para/${name}`)).length) found.push(`branch para/${name}`);
  if (await fs.pathExists(p.worktree)) found.push(`worktree folder ${p.worktree}`);
  if ((await repo.git(['worktree', 'list', '--porcelain'])).includes(p.worktree)) found.push('worktree record');
  if (await fs.pathExists(p.state)) found.push(`state file ${p.state}`);
  for (const id of await containers(repo, name)) found.push(`container ${id.slice(0, 12)}`);
  if ((await docker(['volume', 'ls', '-q', '--filter', `label=${labels.repo}=${repo.root}`, '--filter', `label=${labels.session}=${name}`])).stdout.trim())
    found.push(`volume ${p.volume}`);
  return found;
}

/** Polls until check() is true; the timeout error names the condition. */
async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** Follows the job to its end (logs -f) and returns its exit code as logs reports it. */
async function jobExitCode(repo: TestRepo, name: string): Promise<string> {
  const follow = await runScript('logs.ts', [name, '--follow'], { cwd: repo.root, env: repo.env });
  const json = JSON.parse((await runScript('logs.ts', [name, '--json'], { cwd: repo.root, env: repo.env })).stdout) as { exitCode: number | null };
  assert.is(String(json.exitCode), String(follow.exitCode), 'logs -f and logs --json disagree');
  return String(json.exitCode);
}

async function jobOutput(repo: TestRepo, name: string): Promise<string> {
  return (JSON.parse((await runScript('logs.ts', [name, '--json'], { cwd: repo.root, env: repo.env })).stdout) as { output: string }).output;
}

function errorCode(result: ScriptResult): string | undefined {
  try {
    return (JSON.parse(result.stdout) as { error?: { code?: string } }).error?.code;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------

const job = suite('start.ts with -- CMD runs it detached in a container where git works');
const j: { repo: TestRepo; name: string; head: string; result: ScriptResult; container: string } = {
  repo: undefined as unknown as TestRepo,
  name: 'agent-commit',
  head: '',
  result: { stdout: '', stderr: '', exitCode: -1 },
  container: '',
};
const SCRIPT = [
  'echo "written by the agent" > made.txt',
  'git add made.txt',
  'git -c user.name=Agent -c user.email=agent@example.invalid commit -q -m "from the container"',
  'echo done',
].join(' && ');
const FAKE_API_KEY = `sk-ant-api03-PARAFAKE${RUN_ID}KEY`;

job.before(async () => {
  await sessionImage();
  j.repo = await makeRepo();
  j.head = await j.repo.git(['rev-parse', 'HEAD']);
  // Secrets in start.ts's own environment must not reach the container.
  j.result = await start(j.repo, detached(j.name, '--', 'sh', '-c', SCRIPT), { CLAUDE_CODE_OAUTH_TOKEN: FAKE_TOKEN, ANTHROPIC_API_KEY: FAKE_API_KEY });
  assert.is(j.result.exitCode, 0, j.result.stderr);
  j.container = (await readState(j.repo, j.name)).container ?? '';
  assert.is(await jobExitCode(j.repo, j.name), '0', await jobOutput(j.repo, j.name));
});

job('the commit made inside the container is on para/NAME on the host, on top of the base commit', async () => {
  assert.is(await j.repo.git(['log', '-1', '--format=%s', 'para/agent-commit']), 'from the container');
  assert.is(await j.repo.git(['rev-parse', 'para/agent-commit~1']), j.head);
  assert.is(await j.repo.git(['show', 'para/agent-commit:made.txt']), 'written by the agent');
  assert.is(await j.repo.git(['rev-parse', 'main']), j.head, 'the base branch moved');
});

job('the file the agent wrote belongs to the host user (the agent UID on a root host)', async () => {
  const stat = await fs.stat(path.join(paths(j.repo, j.name).worktree, 'made.txt'));
  assert.is(stat.uid, imageUserIds().uid);
  assert.is(stat.gid, imageUserIds().gid);
});

job("the background job's exit code and output are recorded in the container, where the agent cannot write them", async () => {
  assert.is((await readState(j.repo, j.name)).job?.exitCode, 0);
  assert.match(await jobOutput(j.repo, j.name), 'done');
  const forge = await docker(['exec', '--user', 'para', j.container, 'sh', '-c', 'echo 9 > /run/para/exit-code'], { allowFailure: true });
  assert.is.not(forge.exitCode, 0);
});

job('git status and git log work inside the container, in the worktree', async () => {
  const status = await docker(['exec', '--user', 'para', j.container, 'git', 'status', '--porcelain']);
  assert.is(status.stdout.trim(), '');
  const log = await docker(['exec', '--user', 'para', j.container, 'git', 'log', '--format=%s']);
  assert.equal(log.stdout.trim().split('\n'), ['from the container', 'initial']);
  const cwd = await docker(['exec', '--user', 'para', j.container, 'pwd']);
  assert.is(cwd.stdout.trim(), paths(j.repo, j.name).worktree);
});

job("the host's git folder is not in the container; its objects are read-only; a new commit reaches the host on sync", async () => {
  const gitDir = path.join(j.repo.root, '.git');
  const seen = await docker(['exec', '--user', 'para', j.container, 'sh', '-c', 'test -e "$1/config" && echo visible || echo absent', 'sh', gitDir]);
  assert.is(seen.stdout.trim(), 'absent');
  const write = await docker(['exec', '--user', 'para', j.container, 'sh', '-c', 'touch /para/host-objects/planted'], { allowFailure: true });
  assert.is.not(write.exitCode, 0);
  assert.match(write.stderr, /Read-only/i);
  const commit = await docker([
    'exec',
    '--user',
    'para',
    j.container,
    'git',
    '-c',
    'user.name=Agent',
    '-c',
    'user.email=agent@example.invalid',
    'commit',
    '-q',
    '--allow-empty',
    '-m',
    'second',
  ]);
  assert.is(commit.exitCode, 0);
  assert.is(await j.repo.git(['log', '-1', '--format=%s', 'para/agent-commit']), 'from the container', 'the host branch moved before a sync');
  const sync = await runScript('sync.ts', [j.name, '--json'], { cwd: j.repo.root, env: j.repo.env });
  assert.is(sync.exitCode, 0, sync.stderr);
  assert.is(JSON.parse(sync.stdout).ok, true);
  assert.is(await j.repo.git(['log', '-1', '--format=%s', 'para/agent-commit']), 'second');
});

job('the container carries the session, repository and managed-by labels, limits, and the agent runs as non-root', async () => {
  const info = await inspectContainer(j.container);
  assert.ok(info, 'container missing');
  const l = info.Config.Labels ?? {};
  assert.is(l[labels.session], j.name);
  assert.is(l[labels.repo], j.repo.root);
  assert.is(l[labels.managedBy], MANAGED_BY);
  assert.is(l[TEST_LABEL], RUN_ID);
  assert.is(info.State.Running, true);
  assert.is(info.HostConfig.NetworkMode, 'none');
  const ids = (await docker(['exec', j.container, 'sh', '-c', 'ps -o user= -o comm= 2>/dev/null || true'], { allowFailure: true })).stdout;
  assert.not.match(ids, /^0\s+sh$/m);
  const id = (await docker(['exec', '--user', 'para', j.container, 'id', '-u'])).stdout.trim();
  assert.is(id, String(imageUserIds().uid));
  const job = (await docker(['exec', j.container, 'sh', '-c', 'stat -c %U /para/session/repo.git'])).stdout.trim();
  assert.is(job, 'para');
  const hostConfig = (await docker(['container', 'inspect', '--format', '{{json .HostConfig}}', j.container])).stdout;
  const hc = JSON.parse(hostConfig) as { Memory: number; NanoCpus: number; PidsLimit: number; SecurityOpt: string[]; CapAdd: string[] };
  assert.is(hc.Memory, 4 * 1024 ** 3);
  assert.is(hc.NanoCpus, 2e9);
  assert.is(hc.PidsLimit, 1024);
  assert.ok(hc.SecurityOpt.includes('no-new-privileges'));
  const binds = (info.Mounts ?? []).filter((m) => m.Type === 'bind');
  assert.equal(
    binds.filter((m) => m.RW).map((m) => m.Source),
    [paths(j.repo, j.name).worktree],
    'only the worktree folder is writable',
  );
});

job("no secret is in the container's environment or its inspect output", async () => {
  const info = await inspectContainer(j.container);
  const env = info?.Config.Env ?? [];
  for (const key of ['CLAUDE_CODE_OAUTH_TOKEN', 'ANTHROPIC_API_KEY']) {
    assert.not.ok(
      env.some((entry) => entry.startsWith(`${key}=`)),
      `${key} in Config.Env`,
    );
  }
  const inspect = (await docker(['container', 'inspect', j.container])).stdout;
  const live = (await docker(['exec', '--user', 'para', j.container, 'env'])).stdout;
  for (const secret of [FAKE_TOKEN, FAKE_API_KEY]) {
    assert.not.ok(inspect.includes(secret), 'secret in docker inspect');
    assert.not.ok(live.includes(secret), 'secret in the environment of docker exec');
    assert.not.ok(j.result.stdout.includes(secret) || j.result.stderr.includes(secret), 'secret in the output of start.ts');
  }
});

job('the state file holds the documented fields', async () => {
  const state = await readState(j.repo, j.name);
  const p = paths(j.repo, j.name);
  assert.is(state.name, j.name);
  assert.is(state.repo, j.repo.root);
  assert.is(state.branch, 'para/agent-commit');
  assert.is(state.baseBranch, 'main');
  assert.is(state.baseCommit, j.head);
  assert.is(state.worktree, p.worktree);
  assert.is(state.container, j.container);
  assert.is(state.image, IMAGE);
  assert.is(state.prompt, null);
  assert.is(state.status, 'active');
  assert.ok(Date.parse(state.createdAt) <= Date.now() && Date.parse(state.createdAt) > Date.now() - 10 * 60_000);
  assert.equal(state.job?.command, ['sh', '-c', SCRIPT]);
});

job('.para ignores itself: the repository stays clean and no user file is modified', async () => {
  assert.is(await j.repo.git(['status', '--porcelain', '--untracked-files=all', '--ignored=no']), '');
  assert.is(await fs.readFile(path.join(j.repo.root, '.para', '.gitignore'), 'utf8'), '*\n!allowed-hosts\n!image/\n!image/**\n');
  assert.not.ok(await fs.pathExists(path.join(j.repo.root, '.gitignore')));
  assert.not.ok((await fs.readFile(path.join(j.repo.root, '.git', 'info', 'exclude'), 'utf8')).includes('.para'));
});

job('a failing job records its own exit code', async () => {
  const result = await start(j.repo, detached('fails', '--', 'sh', '-c', 'echo about to fail; exit 3'));
  assert.is(result.exitCode, 0, result.stderr);
  assert.is(await jobExitCode(j.repo, 'fails'), '3');
  assert.match(await jobOutput(j.repo, 'fails'), 'about to fail');
});

job.run();

// ---------------------------------------------------------------------------------------------

const prompt = suite('start.ts "PROMPT" derives a readable, valid, unique name');
const pr: { repo: TestRepo; first: Record<string, unknown> } = { repo: undefined as unknown as TestRepo, first: {} };

prompt.before(async () => {
  await sessionImage();
  pr.repo = await makeRepo();
  // The detached prompt runs claude -p, which fails without a network: only the start matters here.
  const result = await start(pr.repo, ['implement feature X', '--container', '--detach', '--network', 'none', '--image', IMAGE, '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  pr.first = JSON.parse(result.stdout) as Record<string, unknown>;
});

prompt('--json prints one object with name, branch, worktree, container, image and status', () => {
  assert.type(pr.first, 'object');
  assert.not.ok(Array.isArray(pr.first));
  for (const key of ['name', 'branch', 'worktree', 'container', 'image', 'status']) assert.ok(key in pr.first, `${key} missing`);
  assert.is(pr.first.branch, `para/${pr.first.name as string}`);
  assert.is(pr.first.worktree, paths(pr.repo, pr.first.name as string).worktree);
  assert.is(pr.first.image, IMAGE);
  assert.is(pr.first.status, 'active');
});

prompt('the derived name is valid and readable, and the prompt is recorded', async () => {
  const name = pr.first.name as string;
  assert.ok(SESSION_NAME_PATTERN.test(name), name);
  assert.is(name, 'implement-feature-x');
  const state = await readState(pr.repo, name);
  assert.is(state.prompt, 'implement feature X');
  assert.equal(state.job?.command.slice(0, 5), ['claude', '--settings', HOOK_SETTINGS, '-p', 'implement feature X']);
  const info = await inspectContainer(pr.first.container as string);
  assert.is(info?.Config.Labels?.[labels.session], name);
  assert.is(await fs.pathExists(paths(pr.repo, name).worktree), true);
});

prompt('a second start from the same prompt gets another valid name', async () => {
  const result = await start(pr.repo, ['implement feature X', '--container', '--detach', '--network', 'none', '--image', IMAGE, '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  const second = JSON.parse(result.stdout) as Record<string, unknown>;
  assert.is.not(second.name, pr.first.name);
  assert.ok(SESSION_NAME_PATTERN.test(second.name as string));
  assert.is.not(second.container, pr.first.container);
  assert.is((await readState(pr.repo, second.name as string)).prompt, 'implement feature X');
  assert.equal(await branches(pr.repo), [`para/${pr.first.name as string}`, `para/${second.name as string}`].sort());
});

prompt('-p with a name, and --prompt-file, record the prompt under the given name', async () => {
  const named = await start(pr.repo, [...detached('named-task'), '-p', 'write the docs', '--json']);
  assert.is(named.exitCode, 0, named.stderr);
  assert.is(JSON.parse(named.stdout).name, 'named-task');
  assert.is((await readState(pr.repo, 'named-task')).prompt, 'write the docs');
  const file = path.join(await tempDir('para-test-prompt-'), 'prompt.txt');
  await fs.writeFile(file, 'fix the flaky test\nin the parser\n');
  const fromFile = await start(pr.repo, ['--prompt-file', file, '--container', '--detach', '--network', 'none', '--image', IMAGE, '--json']);
  assert.is(fromFile.exitCode, 0, fromFile.stderr);
  const state = await readState(pr.repo, JSON.parse(fromFile.stdout).name);
  assert.is(state.name, 'fix-the-flaky-test-in-the');
  assert.is(state.prompt, 'fix the flaky test\nin the parser');
});

prompt('a prompt given twice, or a missing prompt file, is a usage error that creates nothing', async () => {
  const before = await branches(pr.repo);
  const twice = await start(pr.repo, ['do this now', '-p', 'and that', '--container', '--detach', '--image', IMAGE]);
  assert.is(twice.exitCode, 2);
  assert.match(twice.stderr, 'twice');
  const missing = await start(pr.repo, ['x', '--prompt-file', '/nonexistent/prompt.txt', '--container', '--detach', '--image', IMAGE]);
  assert.is(missing.exitCode, 2);
  assert.match(missing.stderr, 'prompt file');
  assert.equal(await branches(pr.repo), before);
});

prompt('a prompt whose name would be reserved gets another name, and cancel works on it', async () => {
  const result = await start(pr.repo, ['-p', 'Archived', '--container', '--detach', '--network', 'none', '--image', IMAGE, '--json']);
  assert.is(result.exitCode, 0, result.stderr);
  const name = JSON.parse(result.stdout).name as string;
  assert.is(name, 'archived-2');
  const cancelled = await runScript('cancel.ts', [name, '--force'], { cwd: pr.repo.root, env: pr.repo.env });
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
});

prompt.run();

// ---------------------------------------------------------------------------------------------

const resume = suite('starting an existing session again resumes it');
const rs: { repo: TestRepo; id: string } = { repo: undefined as unknown as TestRepo, id: '' };

resume.before(async () => {
  await sessionImage();
  rs.repo = await makeRepo();
  const result = await start(rs.repo, detached('again', '--json', '--', 'true'));
  assert.is(result.exitCode, 0, result.stderr);
  rs.id = (await containers(rs.repo, 'again'))[0];
  assert.is(await jobExitCode(rs.repo, 'again'), '0');
});

resume('a second start reuses the running container and creates no duplicate', async () => {
  const result = await start(rs.repo, detached('again', '--json', '--', 'true'));
  assert.is(result.exitCode, 0, result.stderr);
  assert.is((JSON.parse(result.stdout) as { resumed: boolean }).resumed, true);
  assert.equal(await containers(rs.repo, 'again'), [rs.id]);
  assert.equal(await branches(rs.repo), ['para/again']);
  assert.is(await jobExitCode(rs.repo, 'again'), '0');
});

resume('a stopped container is restarted, still the same one', async () => {
  await docker(['stop', '--time', '1', rs.id]);
  assert.is((await inspectContainer(rs.id))?.State.Running, false);
  const result = await start(rs.repo, detached('again', '--', 'true'));
  assert.is(result.exitCode, 0, result.stderr);
  assert.match(result.stderr, 'resumed');
  assert.equal(await containers(rs.repo, 'again'), [rs.id]);
  assert.is((await inspectContainer(rs.id))?.State.Running, true);
  assert.is(await jobExitCode(rs.repo, 'again'), '0');
  assert.is((await readState(rs.repo, 'again')).status, 'active');
});

resume("--image on a resume moves the session to that image, keeping its files and the agent's commits", async () => {
  const repo = await makeRepo();
  const first = await start(
    repo,
    detached('switch', '--', 'sh', '-c', 'echo kept > kept.txt && git add kept.txt && git commit -qm "before the switch" && echo loose > loose.txt'),
  );
  assert.is(first.exitCode, 0, first.stderr);
  assert.is(await jobExitCode(repo, 'switch'), '0');
  const other = trackImage(`para-session-test-${RUN_ID}:other`);
  await docker(['tag', IMAGE, other]);
  const before = (await containers(repo, 'switch'))[0];
  const switched = await start(repo, [
    'switch',
    '--container',
    '--detach',
    '--image',
    other,
    '--json',
    '--',
    'sh',
    '-c',
    'git log -1 --format=%s; cat loose.txt',
  ]);
  assert.is(switched.exitCode, 0, switched.stderr);
  assert.is(JSON.parse(switched.stdout).image, other);
  const after = await containers(repo, 'switch');
  assert.is(after.length, 1);
  assert.is.not(after[0], before, 'the container was not re-created');
  assert.is((await inspectContainer(after[0]))?.Config.Image, other);
  assert.is(await jobExitCode(repo, 'switch'), '0');
  assert.is(await jobOutput(repo, 'switch'), 'before the switch\nloose\n');
  assert.is((await readState(repo, 'switch')).image, other);
});

resume.run();

// ---------------------------------------------------------------------------------------------

const refuse = suite('start.ts refuses bad input and unusable repositories, creating nothing');

refuse.before(sessionImage);

refuse('without a terminal and without --detach: a clear error, exit 2, nothing created', async () => {
  const repo = await makeRepo();
  const result = await start(repo, ['tty-less', '--container', '--image', IMAGE, '--network', 'none']);
  assert.is(result.exitCode, 2);
  assert.match(result.stderr, 'no terminal');
  assert.match(result.stderr, '--detach');
  assert.equal(await leftovers(repo, 'tty-less'), []);
});

refuse('bad names exit 2 with the allowed form, and nothing is created', async () => {
  const repo = await makeRepo();
  const bad = ['../x', 'a/b', 'x;rm', '$(id)', 'a..b', 'a'.repeat(51), 'café', ''];
  const results = await Promise.all([
    ...bad.map((name) => start(repo, [name, '--container', '--detach', '--image', IMAGE, '--network', 'none', '--json'])),
    // minimist reads -x as an option, which is a usage error too.
    start(repo, ['-x', '--container', '--detach', '--image', IMAGE, '--network', 'none', '--json']),
  ]);
  for (const [index, result] of results.entries()) {
    const name = bad[index] ?? '-x';
    assert.is(result.exitCode, 2, `${JSON.stringify(name)}: ${result.stderr}`);
    assert.is(errorCode(result), 'usage', name);
    if (name === '-x') assert.match(result.stderr, 'unknown option -x');
    else assert.ok(result.stderr.includes(SESSION_NAME_FORM), `${JSON.stringify(name)}: ${result.stderr}`);
  }
  assert.equal(await branches(repo), []);
  assert.not.ok(await fs.pathExists(path.join(repo.root, '.para')), '.para was created');
  assert.is((await repo.git(['worktree', 'list', '--porcelain'])).split('\n').filter((l) => l.startsWith('worktree ')).length, 1);
  assert.equal(await containers(repo), []);
  assert.is(await repo.git(['status', '--porcelain']), '');
});

refuse('outside a git repository: a clear error, nothing created', async () => {
  const dir = await tempDir('para-test-norepo-');
  const result = await runScript('start.ts', detached('outside'), { cwd: dir, env: { GIT_CEILING_DIRECTORIES: os.tmpdir() } });
  assert.is(result.exitCode, 1);
  assert.match(result.stderr, 'not inside a git repository');
  assert.match(result.stderr, 'next step');
  assert.equal(await fs.readdir(dir), []);
});

refuse('a repository with no commit: a clear error, nothing created', async () => {
  const dir = await tempDir('para-test-empty-repo-');
  const repo = await makeRepo();
  await execa('git', ['init', '-q', '-b', 'main', dir], { env: repo.env });
  const result = await runScript('start.ts', detached('empty'), { cwd: dir, env: repo.env });
  assert.is(result.exitCode, 1);
  assert.match(result.stderr, 'has no commit');
  assert.match(result.stderr, 'first commit');
  assert.equal(await fs.readdir(dir), ['.git']);
});

refuse('an existing branch para/NAME that is no session: a clear error, the branch untouched', async () => {
  const repo = await makeRepo();
  await repo.git(['commit', '-q', '--allow-empty', '-m', 'user work']);
  await repo.git(['branch', 'para/mine']);
  await repo.git(['reset', '-q', '--hard', 'HEAD~1']);
  const before = await repo.git(['rev-parse', 'para/mine']);
  const result = await start(repo, detached('mine', '--', 'true'));
  assert.is(result.exitCode, 1);
  assert.match(result.stderr, 'para/mine already exists');
  assert.is(await repo.git(['rev-parse', 'para/mine']), before);
  assert.equal(await branches(repo), ['para/mine']);
  assert.equal(
    (await leftovers(repo, 'mine')).filter((item) => !item.startsWith('branch')),
    [],
  );
});

refuse('a missing image: the next step names make image and the tag, nothing created', async () => {
  const repo = await makeRepo();
  const missing = `para-missing-${RUN_ID}:none`;
  const result = await start(repo, ['no-image', '--container', '--detach', '--image', missing, '--network', 'none']);
  assert.is(result.exitCode, 1, result.stderr);
  assert.match(result.stderr, `the image ${missing} does not exist`);
  assert.match(result.stderr, `make image TAG=${missing}`);
  assert.equal(await leftovers(repo, 'no-image'), []);
});

refuse('a folder already at the worktree path is refused and left alone', async () => {
  const repo = await makeRepo();
  const folder = paths(repo, 'taken').worktree;
  await fs.mkdirp(folder);
  await fs.writeFile(path.join(folder, 'mine.txt'), 'user data\n');
  const result = await start(repo, detached('taken', '--', 'true'));
  assert.is(result.exitCode, 1, result.stderr);
  assert.match(result.stderr, 'already exists');
  assert.is(await fs.readFile(path.join(folder, 'mine.txt'), 'utf8'), 'user data\n');
  assert.equal(await branches(repo), []);
  assert.equal(await containers(repo), []);
});

refuse('an --image or --network value that looks like an option is refused before anything runs', async () => {
  const repo = await makeRepo();
  for (const args of [['--image=--privileged'], ['--network=-v'], ['--network', 'host'], ['--network', 'container:para-x'], ['-p']]) {
    const result = await start(repo, ['opt', '--container', '--detach', ...args, '--json']);
    assert.is(result.exitCode, 2, result.stderr);
    assert.is(errorCode(result), 'usage');
  }
  assert.equal(await leftovers(repo, 'opt'), []);
});

refuse.run();

// ---------------------------------------------------------------------------------------------

const rollback = suite('a start that fails or is interrupted mid-way leaves nothing behind');

rollback.before(sessionImage);

rollback('docker run failing after the worktree exists (unknown network) rolls everything back', async () => {
  const repo = await makeRepo();
  // With open egress the session container itself joins the network, so docker run is what fails.
  const result = await start(repo, ['broken-net', '--container', '--detach', '--image', IMAGE, '--egress', 'open', '--network', `para-missing-net-${RUN_ID}`]);
  assert.is(result.exitCode, 1, result.stderr);
  assert.match(result.stderr, 'not found');
  assert.equal(await leftovers(repo, 'broken-net'), []);
  assert.equal(await branches(repo), []);
  assert.is(await repo.git(['status', '--porcelain']), '');
});

/** Waits until no docker CLI that names this container is still running (a killed start's children). */
async function noDockerClientFor(container: string): Promise<void> {
  await waitFor(
    `the docker commands for ${container} to end`,
    async () => (await execa('pgrep', ['-f', `docker .*${container}`], { reject: false })).exitCode !== 0,
    30_000,
  );
}

/** Starts start.ts, sends `signal` once `trigger` exists, and returns how it ended. */
async function interruptWhen(
  repo: TestRepo,
  name: string,
  trigger: string,
  signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM',
): Promise<{ signal?: string; exitCode?: number; stderr: string }> {
  const [command, ...entry] = scriptCommand('start');
  // A Claude setup to carry in: the start then waits for the agent's repository and readies claude
  // after the container runs, so a signal sent once the repository is seeded lands while it works.
  const home = await tempDir('para-test-home-');
  await fs.outputFile(path.join(home, '.claude', 'settings.json'), JSON.stringify({ model: 'claude-opus-4-5' }));
  const child = execa(command, [...entry, ...detached(name, '--', 'sleep', '60')], {
    cwd: repo.root,
    env: { PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`, ...repo.env, HOME: home, CLAUDE_CONFIG_DIR: undefined },
    stdin: 'ignore',
    reject: false,
    timeout: 60_000,
  });
  let sent = false;
  const watcher = waitFor(trigger, async () => sent || (await fs.pathExists(trigger)), 30_000).then(() => {
    sent = true;
    child.kill(signal);
  });
  const result = await child;
  sent = true;
  await watcher.catch(() => undefined);
  return { signal: result.signal, exitCode: result.exitCode, stderr: String(result.stderr) };
}

rollback('SIGTERM while the worktree is being created leaves nothing behind', async () => {
  const repo = await makeRepo();
  const ended = await interruptWhen(repo, 'sigterm-wt', paths(repo, 'sigterm-wt').worktree);
  assert.is(ended.signal, 'SIGTERM', ended.stderr);
  assert.match(ended.stderr, 'interrupted');
  assert.equal(await leftovers(repo, 'sigterm-wt'), []);
});

rollback("SIGTERM once the container runs and the agent's repository is seeded leaves nothing behind", async () => {
  const repo = await makeRepo();
  const ended = await interruptWhen(repo, 'sigterm-run', path.join(paths(repo, 'sigterm-run').worktree, 'README.md'));
  assert.is(ended.signal, 'SIGTERM', ended.stderr);
  assert.equal(await leftovers(repo, 'sigterm-run'), []);
  // A docker CLI still running when start.ts ended could create the container a moment later.
  await noDockerClientFor(paths(repo, 'sigterm-run').container);
  assert.equal(await containers(repo), []);
});

rollback('SIGKILL at several points, then clean: nothing is left and the same name starts afresh', async () => {
  const repo = await makeRepo();
  const p = paths(repo, 'killed');
  for (const trigger of [p.state, p.worktree, path.join(p.worktree, 'README.md')]) {
    const ended = await interruptWhen(repo, 'killed', trigger, 'SIGKILL');
    assert.is(ended.signal, 'SIGKILL', ended.stderr);
    // A docker CLI still running when start.ts died may finish its work a moment later.
    await noDockerClientFor(p.container);
    const cleaned = await runScript('clean.ts', ['--json'], { cwd: repo.root, env: repo.env });
    assert.is(cleaned.exitCode, 0, cleaned.stderr);
    assert.equal(await leftovers(repo, 'killed'), [], `after a kill at ${trigger}: ${cleaned.stdout}`);
  }
  const fresh = await start(repo, detached('killed', '--', 'true'));
  assert.is(fresh.exitCode, 0, fresh.stderr);
  assert.is(await jobExitCode(repo, 'killed'), '0');
});

rollback.run();

// ---------------------------------------------------------------------------------------------

const concurrent = suite('concurrent starts');

concurrent.before(sessionImage);

concurrent('two starts of one name at once: exactly one succeeds, the other fails cleanly', async () => {
  const repo = await makeRepo();
  const results = await Promise.all([1, 2].map(() => start(repo, detached('twin', '--json', '--', 'sleep', '60'))));
  const codes = results.map((r) => r.exitCode).sort();
  assert.is(codes[0], 0, results.map((r) => r.stderr).join('\n'));
  assert.is.not(codes[1], 0, results.map((r) => r.stderr).join('\n'));
  const loser = results.find((r) => r.exitCode !== 0)!;
  assert.ok(['session-busy', 'job-running'].includes(errorCode(loser) ?? ''), loser.stdout);
  assert.is((await containers(repo, 'twin')).length, 1);
  const state = await readState(repo, 'twin');
  assert.is(state.status, 'active');
  assert.is((await inspectContainer(state.container!))?.State.Running, true);
  assert.ok(await fs.pathExists(paths(repo, 'twin').worktree));
});

concurrent('ten starts of different names in parallel all succeed', async () => {
  const repo = await makeRepo();
  const names = Array.from({ length: 10 }, (_, i) => `par-${i}`);
  const results = await Promise.all(names.map((name) => start(repo, detached(name))));
  for (const [i, result] of results.entries()) assert.is(result.exitCode, 0, `${names[i]}: ${result.stderr}`);
  assert.is((await containers(repo)).length, 10);
  assert.equal(await branches(repo), names.map((n) => `para/${n}`).sort());
  for (const name of names) {
    const state = await readState(repo, name);
    assert.is(state.status, 'active');
    assert.is((await inspectContainer(state.container!))?.State.Running, true, name);
  }
});

concurrent.run();
