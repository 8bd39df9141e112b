// A tmux pane of a test's own: para start attached in a real terminal, its screen read as text.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import * as assert from 'uvu/assert';
import { waitUntil } from './engine.ts';
import { scriptCommand } from './images.ts';
import { onCleanup, RUN_ID, TEST_LABEL, tempDir } from './resources.ts';

/** A tmux pane of its own running `start ARGS` (or another script's) in `cwd`; its screen as text, and how to end it. */
export async function inTmux(cwd: string, env: Record<string, string>, args: string[], scriptName = 'start') {
  const session = `para-test-${RUN_ID}-${Math.random().toString(36).slice(2, 8)}`;
  const dir = await tempDir('para-test-tmux-');
  const script = path.join(dir, 'run.sh');
  const exports = Object.entries({ ...env, PARA_EXTRA_LABELS: `${TEST_LABEL}=${RUN_ID}` }).map(([k, v]) => `export ${k}='${v.replace(/'/g, `'\\''`)}'`);
  const command = [...scriptCommand(scriptName), ...args].map((word) => `'${word.replace(/'/g, `'\\''`)}'`).join(' ');
  await fs.writeFile(script, [...exports, `cd '${cwd}'`, `${command}; echo "para-exit=$?"; sleep 600`, ''].join('\n'));
  const made = await execa('tmux', ['new-session', '-d', '-s', session, '-x', '160', '-y', '45', `sh ${script}`], { reject: false });
  assert.is(made.exitCode, 0, `tmux: ${made.stderr} (.ci/run installs tmux)`);
  onCleanup(() => execa('tmux', ['kill-session', '-t', session], { reject: false }));
  const screen = async () => String((await execa('tmux', ['capture-pane', '-p', '-t', session], { reject: false })).stdout);
  return {
    screen,
    /** Waits until claude shows its status line (the prompt is ready), then a few seconds for late warnings. */
    async settled(): Promise<string> {
      await waitUntil('claude to show its prompt', async () => /for shortcuts|bypass permissions on|Enter to confirm|para-exit=/.test(await screen()), 90_000);
      await new Promise((resolve) => setTimeout(resolve, 8000));
      return screen();
    },
    keys: (...keys: string[]) => execa('tmux', ['send-keys', '-t', session, ...keys], { reject: false }),
    end: () => execa('tmux', ['kill-session', '-t', session], { reject: false }),
  };
}
