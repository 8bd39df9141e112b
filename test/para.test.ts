// The para command as a user installs it: from `npm pack`'s tarball into a private prefix, then
// `para start my-feature --container` in a repository of their own, as the documentation types it.
import { execa } from 'execa';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { PROJECT_ROOT } from '../scripts/lib/image/build.ts';
import { SESSION_IMAGE, sessionTestImage } from './support/images.ts';
import { makeRepo, type TestRepo } from './support/repos.ts';
import { RUN_ID, TEST_LABEL, tempDir } from './support/resources.ts';

const installed = { bin: '' };

function para(repo: TestRepo | null, args: string[]) {
  return execa(installed.bin, args, {
    cwd: repo?.root ?? os.tmpdir(),
    env: { ...(repo?.env ?? {}), PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
    reject: false,
    stdin: 'ignore',
    timeout: 3 * 60_000,
  });
}

const command = suite('the para command, installed from its npm tarball');

command.before(async () => {
  await sessionTestImage();
  const packs = await tempDir('para-test-pack-');
  const packed = await execa('npm', ['pack', '--pack-destination', packs, '--silent'], { cwd: PROJECT_ROOT, reject: false });
  assert.is(packed.exitCode, 0, packed.stderr);
  const tarball = path.join(packs, packed.stdout.trim().split('\n').pop()!);
  const prefix = await tempDir('para-test-prefix-');
  const install = await execa('npm', ['install', '--global', '--prefix', prefix, '--offline', '--no-audit', '--no-fund', tarball], { reject: false });
  assert.is(install.exitCode, 0, install.stderr);
  installed.bin = path.join(prefix, 'bin', 'para');
});

command('para --help lists every command, and para <command> --help speaks of para', async () => {
  const help = await para(null, ['--help']);
  assert.is(help.exitCode, 0, help.stderr);
  for (const name of ['image', 'login', 'start', 'list', 'logs', 'sync', 'finish', 'cancel', 'clean', 'doctor'])
    assert.match(help.stdout, new RegExp(`^\\s+${name}\\s`, 'm'));
  const start = await para(null, ['start', '--help']);
  assert.is(start.exitCode, 0);
  assert.match(start.stdout, 'para start NAME [--container]');
  assert.not.match(start.stdout, 'npx tsx');
  const unknown = await para(null, ['strat', '--json']);
  assert.is(unknown.exitCode, 2);
  assert.match(unknown.stderr, 'did you mean: para start');
  assert.is(JSON.parse(unknown.stdout).ok, false);
});

command('para start my-feature --container and para start "a prompt" --container work in any repository, and hints say para', async () => {
  const repo = await makeRepo();
  const started = await para(repo, [
    'start',
    'my-feature',
    '--container',
    '--detach',
    '--network',
    'none',
    '--image',
    SESSION_IMAGE,
    '--',
    'sh',
    '-c',
    'echo x > x.txt && git add x.txt && git commit -qm "from para"',
  ]);
  assert.is(started.exitCode, 0, started.stderr);
  assert.match(started.stderr, 'para logs my-feature -f');
  assert.is((await para(repo, ['logs', 'my-feature', '-f'])).exitCode, 0);
  const prompt = await para(repo, ['start', 'implement feature X', '--container', '--detach', '--network', 'none', '--image', SESSION_IMAGE, '--json']);
  assert.is(prompt.exitCode, 0, prompt.stderr);
  assert.is(JSON.parse(prompt.stdout).name, 'implement-feature-x');
  const listed = await para(repo, ['list', '--json']);
  assert.equal((JSON.parse(listed.stdout).sessions as Array<{ name: string }>).map((s) => s.name).sort(), ['implement-feature-x', 'my-feature']);
  assert.is(await repo.git(['log', '-1', '--format=%s', 'para/my-feature']), 'from para');
  const missing = await para(repo, ['finish', 'nope']);
  assert.is(missing.exitCode, 1);
  assert.match(missing.stderr, 'para list');
  for (const name of ['my-feature', 'implement-feature-x']) assert.is((await para(repo, ['cancel', name, '--force'])).exitCode, 0);
});

command("the scripts run through tsx from the checkout's own node_modules, and their hints can be typed as printed", async () => {
  const repo = await makeRepo();
  const env = { ...repo.env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}`, npm_config_offline: 'true' };
  const started = await execa(
    'npx',
    [
      '--prefix',
      PROJECT_ROOT,
      'tsx',
      path.join(PROJECT_ROOT, 'scripts', 'start.ts'),
      'via-tsx',
      '--container',
      '--detach',
      '--network',
      'none',
      '--image',
      SESSION_IMAGE,
      '--',
      'echo',
      'hello',
    ],
    {
      cwd: repo.root,
      env,
      reject: false,
      stdin: 'ignore',
    },
  );
  assert.is(started.exitCode, 0, started.stderr);
  const hint = /output: (npx --prefix .* -f)$/m.exec(started.stderr)?.[1];
  assert.ok(hint, started.stderr);
  const followed = await execa('sh', ['-c', hint!], { cwd: repo.root, env, reject: false, stdin: 'ignore' });
  assert.is(followed.exitCode, 0, followed.stderr);
  assert.is(followed.stdout.trim(), 'hello');
  assert.is((await execa('git', ['rev-parse', '--verify', '-q', 'para/via-tsx'], { cwd: repo.root, reject: false })).exitCode, 0);
});

command('the installed package carries only the bundles, the Dockerfiles and the README', async () => {
  const root = path.dirname(path.dirname(await fs.realpath(installed.bin)));
  assert.equal((await fs.readdir(root)).sort(), ['README.md', 'dist', 'docker', 'package.json']);
});

command.run();
