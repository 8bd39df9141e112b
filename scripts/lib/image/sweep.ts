// What a killed make image or make login leaves behind (a staging folder holding credentials,
// a temporary container or tag), removed by the next run once the process that made it is gone.
// Only this machine's and this user's leftovers are touched, found by label or by para's names.
import { createHash } from 'node:crypto';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { labels, MANAGED_BY } from '../config.ts';
import { DockerError } from '../engine/docker.ts';
import type { Engine } from '../engine/engine.ts';
import { OWNER_FILE, STAGING_PREFIX } from './staging.ts';

/** A short id of this machine for names (a container name cannot hold a host name as is). */
export function machineId(): string {
  return createHash('sha256').update(os.hostname()).digest('hex').slice(0, 8);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether a host:pid owner is a process of this machine that has ended. */
export function ownerGone(owner: string | undefined): boolean {
  const match = /^(.*):(\d+)$/.exec(owner ?? '');
  return Boolean(match && match[1] === os.hostname() && !alive(Number(match[2])));
}

const UNOWNED_GRACE_MS = 10 * 60_000;

async function sweepStaging(removed: string[]): Promise<void> {
  const dir = os.tmpdir();
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (!name.startsWith(STAGING_PREFIX)) continue;
    const full = path.join(dir, name);
    const stat = await fs.lstat(full).catch(() => undefined);
    if (!stat?.isDirectory() || stat.uid !== process.getuid?.()) continue;
    const pid = Number((await fs.readFile(path.join(full, OWNER_FILE), 'utf8').catch(() => '')).trim());
    const gone = pid > 0 ? !alive(pid) : Date.now() - stat.mtimeMs > UNOWNED_GRACE_MS;
    if (!gone) continue;
    await fs.rm(full, { recursive: true, force: true });
    removed.push(full);
  }
}

/** A sweep step that docker refuses is skipped: the build goes on and reports docker itself if it must. */
async function tolerant(step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (error) {
    if (!(error instanceof DockerError) || error.kind !== 'command-failed') throw error;
  }
}

/** Removes leftovers of para's own ended runs; returns what it removed (names, never contents). */
export async function sweepLeftovers(engine: Engine): Promise<string[]> {
  const removed: string[] = [];
  await sweepStaging(removed);
  // Containers first: a container still using a temporary image would keep that image alive.
  await tolerant(async () => {
    for (const container of await engine.listContainers({ [labels.managedBy]: MANAGED_BY, [labels.owner]: true })) {
      if (!ownerGone(container.Config.Labels?.[labels.owner])) continue;
      if (await engine.removeContainer(container.Id, { force: true })) removed.push(`container ${container.Name.replace(/^\//, '')}`);
    }
  });
  // The volumes of an online check's proxy (online-check.ts), once its containers are gone.
  await tolerant(async () => {
    for (const volume of await engine.listVolumes({ [labels.managedBy]: MANAGED_BY, [labels.owner]: true })) {
      if (!ownerGone(volume.Labels?.[labels.owner])) continue;
      if (await engine.removeVolume(volume.Name)) removed.push(`volume ${volume.Name}`);
    }
  });
  // The containers that make image layers (image.ts buildContainerName) carry only para-claude's labels.
  await tolerant(async () => {
    for (const container of await engine.listContainers({ [labels.managedBy]: MANAGED_BY })) {
      const name = container.Name.replace(/^\//, '');
      const made = /^para-build-([0-9a-f]{8})-(\d+)-[0-9a-f]+$/.exec(name);
      if (!made || made[1] !== machineId() || alive(Number(made[2]))) continue;
      if (await engine.removeContainer(container.Id, { force: true })) removed.push(`container ${name}`);
    }
  });
  await tolerant(async () => {
    const tags = (await engine.docker(['images', '--format', '{{.Repository}}:{{.Tag}}', '--filter', 'reference=para-build-tmp:*'])).stdout
      .split('\n')
      .filter(Boolean);
    for (const tag of tags) {
      const owner = /^para-build-tmp:(\d+)-[0-9a-f]+$/.exec(tag);
      if (!owner || alive(Number(owner[1]))) continue;
      if (await engine.removeImage(tag, { force: true })) removed.push(`image ${tag}`);
    }
  });
  return removed;
}
