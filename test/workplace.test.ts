// A session as a real workplace: git in the work folder is the session's repository, and plain git
// anywhere else, as in a normal checkout. A job does what test suites and package managers do
// (repositories made, committed, cloned and logged in /tmp and below the folder), and only the
// folder's own commits reach para/NAME.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { runScript, SESSION_IMAGE, sessionTestImage } from './support/images.ts';
import { makeRepo } from './support/repos.ts';

const workplace = suite('git in a session, as in a normal checkout');

workplace.before(sessionTestImage);

workplace("repositories made in /tmp and below the folder are their own; the session branch gets only the folder's commits", async () => {
  const repo = await makeRepo();
  const id = '-c user.name=Fixture -c user.email=fixture@example.invalid';
  const script = [
    'set -e',
    'top=$(pwd)',
    // The work folder: the session's repository, from any subfolder.
    'mkdir -p src && cd src && echo work > work.txt && git add work.txt && git commit -qm "work in the folder"',
    'echo "toplevel: $(git rev-parse --show-toplevel)"',
    // A fixture repository in /tmp, as a test suite makes one: init, commit, clone, log.
    'cd /tmp && git init -q fixture && cd fixture && echo f > f.txt && git add f.txt',
    `git ${id} commit -qm "fixture commit"`,
    'git clone -q /tmp/fixture /tmp/fixture-clone && echo "clone: $(git -C /tmp/fixture-clone log --format=%s)"',
    'echo "tmp toplevel: $(git rev-parse --show-toplevel)"',
    // Outside any repository git says so, as it would on a laptop.
    'cd / && if git rev-parse --git-dir >/dev/null 2>&1; then echo "root is a repository"; fi',
    // A nested repository below the folder (cargo new, a vendored library) is its own too.
    'cd "$top" && mkdir -p vendor/lib && cd vendor/lib && git init -q && echo lib > lib.c && git add lib.c',
    `git ${id} commit -qm "nested commit" && echo "nested toplevel: $(git rev-parse --show-toplevel)"`,
    'cd "$top" && echo "status: $(git status --porcelain | tr "\\n" " ")"',
  ].join('\n');
  const started = await runScript('start.ts', ['work', '--container', '--detach', '--network', 'none', '--image', SESSION_IMAGE, '--', 'bash', '-c', script], {
    cwd: repo.root,
    env: repo.env,
  });
  assert.is(started.exitCode, 0, started.stderr);
  const logs = await runScript('logs.ts', ['work', '--follow'], { cwd: repo.root, env: repo.env });
  assert.is(logs.exitCode, 0, `${logs.stdout}\n${logs.stderr}`);
  const worktree = `${repo.root}/.para/worktrees/work`;
  assert.match(logs.stdout, `toplevel: ${worktree}`);
  assert.match(logs.stdout, 'clone: fixture commit');
  assert.match(logs.stdout, 'tmp toplevel: /tmp/fixture');
  assert.match(logs.stdout, `nested toplevel: ${worktree}/vendor/lib`);
  assert.not.match(logs.stdout, 'root is a repository');
  assert.match(logs.stdout, 'status: ?? vendor/');
  assert.equal((await repo.git(['log', '--format=%s', 'main..para/work'])).split('\n'), ['work in the folder']);
  const subjects = await repo.git(['log', '--all', '--format=%s']);
  assert.not.match(subjects, 'fixture commit');
  assert.not.match(subjects, 'nested commit');
  await runScript('cancel.ts', ['work', '--force'], { cwd: repo.root, env: repo.env });
});

workplace.run();
