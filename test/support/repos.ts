// Temporary git repositories for session tests. On a root host the repository belongs to the
// unprivileged UID the agent runs as (as a real user's repository belongs to that user).
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import { labels } from '../../scripts/lib/config.ts';
import { docker } from '../../scripts/lib/engine/docker.ts';
import { onCleanup, tempDir } from './resources.ts';

/** Git configuration for the test process and the scripts it runs: an identity, nothing else
 * (git's ownership checks stay as they are). */
export async function gitTestEnv(): Promise<Record<string, string>> {
  const dir = await tempDir('para-test-gitconfig-');
  const file = path.join(dir, 'gitconfig');
  await fs.writeFile(file, '[user]\n\tname = Para Test\n\temail = para-test@example.invalid\n[init]\n\tdefaultBranch = main\n');
  return { GIT_CONFIG_GLOBAL: file, GIT_CONFIG_NOSYSTEM: '1' };
}

export interface TestRepo {
  root: string;
  env: Record<string, string>;
  git: (args: string[]) => Promise<string>;
}

/** A repository with one commit; its containers are removed by label after the run. */
export async function makeRepo(): Promise<TestRepo> {
  const root = await fs.realpath(await tempDir('para-test-repo-'));
  const env = await gitTestEnv();
  const run = async (args: string[]) => (await execa('git', args, { cwd: root, env })).stdout.trim();
  await run(['init', '-q', '-b', 'main']);
  await fs.writeFile(path.join(root, 'README.md'), '# test repository\n');
  await run(['add', 'README.md']);
  await run(['commit', '-q', '-m', 'initial']);
  onCleanup(async () => {
    const ids = (await docker(['ps', '-aq', '--filter', `label=${labels.repo}=${root}`])).stdout.split('\n').filter(Boolean);
    if (ids.length) await docker(['rm', '-f', '-v', ...ids], { allowFailure: true });
    const volumes = (await docker(['volume', 'ls', '-q', '--filter', `label=${labels.repo}=${root}`])).stdout.split('\n').filter(Boolean);
    if (volumes.length) await docker(['volume', 'rm', ...volumes], { allowFailure: true });
  });
  return { root, env, git: run };
}
