import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { assertSupportedPlatform, parseArgs } from '../scripts/lib/cli.ts';
import { extraLabels } from '../scripts/lib/config.ts';
import { ParaError, UsageError } from '../scripts/lib/errors.ts';
import { runScript } from './support/images.ts';

const args = suite('argument parsing');
const spec = { string: ['tag', 'token-file'], boolean: ['json', 'help'], alias: { h: 'help' } };

args('declared options are parsed', () => {
  const parsed = parseArgs(['--tag', 'x:1', '--json', '--token-file=-'], spec);
  assert.is(parsed.tag, 'x:1');
  assert.is(parsed.json, true);
  assert.is(parsed['token-file'], '-');
});

args('positional arguments stay as typed: 007 is not the number 7', () => {
  assert.equal(parseArgs(['007', '1e3'], spec)._, ['007', '1e3']);
});

args('an unknown flag is a usage error', () => {
  assert.throws(
    () => parseArgs(['--tga', 'x'], spec),
    (error: unknown) => error instanceof UsageError && /--tga/.test((error as Error).message),
  );
});

args('an option given twice or without a value is refused', () => {
  const isUsage = (error: unknown) => error instanceof UsageError;
  assert.throws(() => parseArgs(['--tag', 'a', '--tag', 'b'], spec), isUsage);
  assert.throws(() => parseArgs(['--tag='], spec), isUsage);
});

args('Windows is refused with a clear message', () => {
  assert.throws(
    () => assertSupportedPlatform('win32'),
    (error: unknown) => error instanceof ParaError && /not supported/.test((error as Error).message),
  );
  assertSupportedPlatform('linux');
  assertSupportedPlatform('darwin');
});

args('PARA_EXTRA_LABELS is parsed and cannot override para labels', () => {
  assert.equal(extraLabels('ci.job=42, team=core'), { 'ci.job': '42', team: 'core' });
  assert.throws(() => extraLabels('novalue'));
  assert.throws(() => extraLabels('dev.para.repo=/x'));
});

args.run();

const script = suite('build-image.ts usage');

script('an unknown flag exits 2 and names the flag', async () => {
  const result = await runScript('build-image.ts', ['--bogus']);
  assert.is(result.exitCode, 2);
  assert.match(result.stderr, '--bogus');
});

script('--help prints usage on stdout and exits 0', async () => {
  const result = await runScript('build-image.ts', ['--help']);
  assert.is(result.exitCode, 0);
  assert.match(result.stdout, '--token-file');
});

script('--token-file together with --api-key-file is refused', async () => {
  const result = await runScript('build-image.ts', ['--token-file', 'a', '--api-key-file', 'b', '--json']);
  assert.is(result.exitCode, 2);
  assert.is(JSON.parse(result.stdout).ok, false);
});

script.run();

const names = suite('session names');

names('every name the pattern accepts is a valid git branch under para/', async () => {
  const { execa } = await import('execa');
  const { SESSION_NAME_PATTERN } = await import('../scripts/lib/session/paths.ts');
  const alphabet = 'abcXYZ019_-';
  const samples = ['a', '0', 'a-', 'a_', 'A--b', '9__', 'x'.repeat(50), 'HEAD', 'lock', 'a-lock'];
  for (let i = 0; i < 40; i += 1) {
    let name = 'aZ9'[i % 3];
    for (let j = 0; j < i % 12; j += 1) name += alphabet[(i * 7 + j * 3) % alphabet.length];
    samples.push(name);
  }
  for (const name of samples) {
    assert.ok(SESSION_NAME_PATTERN.test(name), name);
    const result = await execa('git', ['check-ref-format', '--branch', `para/${name}`], { reject: false });
    assert.is(result.exitCode, 0, `para/${name} is not a valid branch name`);
  }
});

names.run();

const boundary = suite('the host side of the session boundary (units)');

boundary('isValidRefName agrees with git check-ref-format, including names git accepts that look odd', async () => {
  const { execa } = await import('execa');
  const { isValidRefName } = await import('../scripts/lib/session/transport.ts');
  const samples = [
    'refs/heads/a',
    'refs/heads/fix#12',
    'refs/heads/über',
    'refs/heads/a,b',
    'refs/heads/x/../y',
    'refs/heads/.hidden',
    'refs/heads/a.lock',
    'refs/heads/a b',
    'refs/heads/a~1',
    'refs/heads/a^',
    'refs/heads/a:b',
    'refs/heads/a?',
    'refs/heads/a*',
    'refs/heads/a[',
    'refs/heads/a\\b',
    'refs/heads/a@{1}',
    'refs/heads/a//b',
    'refs/heads/a/',
    'refs/heads/a.',
    'refs/heads/\u0007bell',
    'refs/tags/v1.0',
    'refs/heads/@',
  ];
  for (const ref of samples) {
    const git = (await execa('git', ['check-ref-format', ref], { reject: false })).exitCode === 0;
    assert.is(isValidRefName(ref), git, ref);
  }
});

boundary('a state file is refused unless it names its own session, branch, folder and container', async () => {
  const { parseState } = await import('../scripts/lib/session/store.ts');
  const { sessionPaths } = await import('../scripts/lib/session/paths.ts');
  const repo = { root: '/r', commonDir: '/r/.git' };
  const p = sessionPaths(repo, 's');
  const good = {
    version: 2,
    name: 's',
    repo: '/r',
    branch: 'para/s',
    baseBranch: 'main',
    baseCommit: 'a'.repeat(40),
    worktree: p.worktree,
    container: p.container,
    image: 'img',
    network: null,
    limits: null,
    prompt: null,
    createdAt: 'now',
    status: 'active',
    job: null,
  };
  assert.is(parseState(repo, 's', JSON.stringify(good), 'f').name, 's');
  for (const bad of [
    { name: 'zz' },
    { branch: 'release' },
    { worktree: '/' },
    { container: 'bystander' },
    { repo: '/other' },
    { baseCommit: 'HEAD' },
    { status: 'gone' },
    { image: '--privileged' },
    { version: 1 },
  ]) {
    assert.throws(() => parseState(repo, 's', JSON.stringify({ ...good, ...bad }), 'f'), /not valid/, JSON.stringify(bad));
  }
});

boundary('mount fields are CSV-quoted, so commas and quotes in paths cannot add mount options', async () => {
  const { mountArg } = await import('../scripts/lib/engine/spec.ts');
  const [flag, value] = mountArg({ type: 'bind', source: '/a,readonly=false,"x', target: '/t', readonly: true });
  assert.is(flag, '--mount');
  assert.is(value, 'type=bind,"source=/a,readonly=false,""x","target=/t",readonly');
});

boundary('agent text shown on a terminal has its control characters escaped', async () => {
  const { forTerminal } = await import('../scripts/lib/cli.ts');
  assert.is(forTerminal('ok\n\tline \u001b]0;title\u0007 \u009b31m'), 'ok\n\tline \\x1b]0;title\\x07 \\x9bm'.replace('\\x9bm', '\\x9b31m'));
});

boundary.run();

const order = suite('argument errors come first, and say exactly what is wrong');

order('a cluster of short options names each unknown letter once', async () => {
  const { parseArgs } = await import('../scripts/lib/cli.ts');
  const spec = { boolean: ['force', 'help'], alias: { f: 'force', h: 'help' } };
  assert.throws(
    () => parseArgs(['-rf', 'x'], spec),
    (error: Error) => error.message === 'unknown option -r',
  );
  assert.throws(
    () => parseArgs(['-rx'], spec),
    (error: Error) => error.message === 'unknown options -r, -x',
  );
  assert.is(parseArgs(['-fh'], spec).force, true);
});

order('a bad name is reported before a missing terminal or an unusable docker', async () => {
  const { runScript } = await import('./support/images.ts');
  const result = await runScript('start.ts', ['bad/name', '--container', '--json'], { env: { DOCKER_HOST: 'unix:///nonexistent/docker.sock' } });
  assert.is(result.exitCode, 2);
  assert.match(result.stderr, 'invalid session name');
  assert.not.match(result.stderr, /terminal|docker/i);
});

order('a name derived from a prompt never takes a reserved name', async () => {
  const { nameFromPrompt } = await import('../scripts/lib/session/names.ts');
  const { isReservedName } = await import('../scripts/lib/session/paths.ts');
  assert.is(nameFromPrompt('Archived'), 'archived');
  assert.ok(isReservedName(nameFromPrompt('Archived')), 'the test needs a prompt whose first candidate is reserved');
});

order.run();
