// A private temporary folder (mode 0700) that is removed on success, failure and interruption.
import fs from 'fs-extra';
import path from 'node:path';
import { withTempDir } from '../cleanup.ts';
import type { StagedFile } from './credentials.ts';

export const STAGING_PREFIX = 'para-stage-';
export const OWNER_FILE = '.owner-pid';

export async function withStagingDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  // mkdtemp makes it 0700; withTempDir removes it on success, failure and Ctrl-C/SIGTERM.
  return withTempDir(STAGING_PREFIX, async (dir) => {
    // Who made it: a later run removes it once this process is gone (a SIGKILL skips the cleanup).
    await fs.writeFile(path.join(dir, OWNER_FILE), `${process.pid}\n`, { mode: 0o600 });
    return fn(dir);
  });
}

/** Writes files with mode 0600 in folders with mode 0700, creating nothing readable by others. */
export async function writePrivateFiles(root: string, files: StagedFile[]): Promise<void> {
  await fs.mkdir(root, { recursive: true, mode: 0o700 });
  for (const file of files) {
    const target = path.join(root, file.path);
    await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
    await fs.writeFile(target, file.content, { mode: 0o600 });
    await fs.chmod(target, 0o600);
  }
}

/** Places a large file in the staging folder: a hard link when possible, a copy otherwise. */
export async function stageLargeFile(source: string, target: string): Promise<void> {
  await fs.mkdir(path.dirname(target), { recursive: true, mode: 0o700 });
  try {
    await fs.link(source, target);
  } catch {
    await fs.copyFile(source, target);
  }
}

/** A staged program: executable in the context already, so the image needs no chmod layer (a second copy). */
export async function stageProgram(source: string, target: string): Promise<void> {
  await stageLargeFile(source, target);
  if (((await fs.stat(target)).mode & 0o111) !== 0o111) {
    // A hard link shares the source's mode: give the context a copy of its own instead.
    await fs.rm(target);
    await fs.copyFile(source, target);
    await fs.chmod(target, 0o755);
  }
}
