// The interactive path: with a terminal and without --detach, the command is attached in the
// container; when it exits the container keeps running and a second start resumes it.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { suite } from 'uvu';
import { inTmux } from './support/tmux.ts';
import * as assert from 'uvu/assert';
import { docker } from '../scripts/lib/engine/docker.ts';
import { inspectContainer } from './support/verbs.ts';
import { conversationFolder, hasConversation } from '../scripts/lib/session/container.ts';
import { sessionPaths } from '../scripts/lib/session/paths.ts';

function containerName(root: string, name: string): string {
  return sessionPaths({ root, commonDir: path.join(root, '.git') }, name).container;
}
import { runScript, scriptCommand, SESSION_IMAGE, sessionTestImage } from './support/images.ts';
import { makeRepo } from './support/repos.ts';
import { RUN_ID, TEST_LABEL } from './support/resources.ts';
import { shellEngine } from '../scripts/lib/engine/engine.ts';

const IMAGE = SESSION_IMAGE;

/** Runs start.ts under a pseudo-terminal made by script(1). */
async function startInTerminal(cwd: string, env: Record<string, string>, args: string[]): Promise<{ output: string; exitCode: number }> {
  const command = [...scriptCommand('start'), ...args].map((word) => `'${word.replace(/'/g, `'\\''`)}'`).join(' ');
  const result = await execa('script', ['--quiet', '--return', '--command', command, '/dev/null'], {
    cwd,
    env: { ...env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` },
    reject: false,
    stdin: 'pipe',
    input: '',
    timeout: 120_000,
  });
  return { output: String(result.stdout), exitCode: result.exitCode ?? -1 };
}

const attach = suite('start.ts with a terminal');

attach.before(sessionTestImage);

attach('attaches the command on a terminal inside the container; the container keeps running afterwards', async () => {
  const repo = await makeRepo();
  const first = await startInTerminal(repo.root, repo.env, [
    'tty-session',
    '--container',
    '--network',
    'none',
    '--image',
    IMAGE,
    '--',
    'sh',
    '-c',
    'echo "inside:$(pwd)"; test -t 0 && echo has-a-terminal',
  ]);
  assert.is(first.exitCode, 0, first.output);
  assert.match(first.output, `inside:${path.join(repo.root, '.para/worktrees/tty-session')}`);
  assert.match(first.output, 'has-a-terminal');
  assert.match(first.output, 'the container keeps running');
  const container = containerName(repo.root, 'tty-session');
  assert.ok((await inspectContainer(container))?.State.Running);
  // claude will not stop at its "trust this folder?" question for the session's worktree.
  const claudeJson = JSON.parse((await docker(['exec', '--user', 'para', container, 'cat', '/home/para/.claude.json'])).stdout);
  assert.is(claudeJson.projects[path.join(repo.root, '.para/worktrees/tty-session')].hasTrustDialogAccepted, true);
  assert.is(claudeJson.hasCompletedOnboarding, true);
  const again = await startInTerminal(repo.root, repo.env, [
    'tty-session',
    '--container',
    '--network',
    'none',
    '--image',
    IMAGE,
    '--',
    'sh',
    '-c',
    'echo second-visit',
  ]);
  assert.is(again.exitCode, 0, again.output);
  assert.match(again.output, 'resumed session tty-session');
  assert.match(again.output, 'second-visit');
});

attach("the exit code of the attached command is start.ts's exit code", async () => {
  const repo = await makeRepo();
  const result = await startInTerminal(repo.root, repo.env, ['tty-exit', '--container', '--network', 'none', '--image', IMAGE, '--', 'sh', '-c', 'exit 7']);
  assert.is(result.exitCode, 7);
});

attach("a resumed session continues claude's conversation only when the container has one for the worktree", async () => {
  const repo = await makeRepo();
  const result = await runScript('start.ts', ['talk', '--container', '--detach', '--network', 'none', '--image', IMAGE, '--', 'true'], {
    cwd: repo.root,
    env: repo.env,
  });
  assert.is(result.exitCode, 0, result.stderr);
  const container = containerName(repo.root, 'talk');
  const worktree = path.join(repo.root, '.para/worktrees/talk');
  assert.is(await hasConversation(shellEngine, container, worktree), false);
  // What claude itself writes after a first exchange in that folder (checked on the real CLI).
  const folder = conversationFolder('/home/para/.claude', worktree);
  await docker(['exec', '--user', 'para', container, 'sh', '-c', 'mkdir -p "$1" && echo {} > "$1/conversation.jsonl"', 'x', folder]);
  assert.is(await hasConversation(shellEngine, container, worktree), true);
});

attach(
  'the real claude attached in a terminal opens on its prompt: no dialog or warning; no permission prompts unless --ask; a resume keeps the mode',
  async () => {
    const repo = await makeRepo();
    const common = ['--container', '--network', 'none', '--image', IMAGE];
    const [bypass, ask] = await Promise.all([inTmux(repo.root, repo.env, ['free', ...common]), inTmux(repo.root, repo.env, ['careful', ...common, '--ask'])]);
    const [free, careful] = await Promise.all([bypass.settled(), ask.settled()]);
    for (const screen of [free, careful]) {
      assert.not.match(screen, 'missing or broken', screen);
      assert.not.match(screen, /Auto-update failed|Bypass Permissions mode|trust this folder|Choose the text style|Enter to confirm/i, screen);
      assert.match(screen, '❯', screen);
    }
    assert.match(free, 'bypass permissions on', free);
    assert.not.match(careful, 'bypass permissions', careful);
    assert.match(careful, '? for shortcuts', careful);
    // Every process's command line (the test image has no ps).
    const commandLines = async (name: string) =>
      (await docker(['exec', containerName(repo.root, name), 'sh', '-c', 'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < "$f"; echo; done'])).stdout;
    assert.match(await commandLines('free'), /claude --settings \{"hooks".* --dangerously-skip-permissions/);
    assert.not.match(await commandLines('careful'), 'dangerously');
    // The terminal goes away (the container keeps running); a resume keeps --ask.
    await ask.end();
    await docker(['exec', containerName(repo.root, 'careful'), 'sh', '-c', 'kill $(pidof claude) 2>/dev/null; true'], { allowFailure: true });
    const state = JSON.parse(await fs.readFile(path.join(repo.root, '.git', 'para', 'sessions', 'careful.json'), 'utf8')) as { permissions: string };
    assert.is(state.permissions, 'ask');
    const again = await inTmux(repo.root, repo.env, ['careful', '--container']);
    const resumed = await again.settled();
    assert.match(resumed, '? for shortcuts', resumed);
    assert.not.match(resumed, 'bypass permissions', resumed);
    await Promise.all([bypass.end(), again.end()]);
  },
);

attach.run();
