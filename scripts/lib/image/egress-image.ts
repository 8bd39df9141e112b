// para-egress: the sessions' proxy image (squid and socat), built by make image from the same
// base image as para-claude. Rebuilt when missing, when its Dockerfile changed, or from another base.
import { createHash } from 'node:crypto';
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { config, labels, MANAGED_BY } from '../config.ts';
import type { Engine } from '../engine/engine.ts';
import { DockerError } from '../engine/docker.ts';
import type { ImageInfo } from '../engine/engine.ts';
import { ParaError } from '../errors.ts';
import { PROJECT_ROOT, promoteImage, temporaryTag } from './build.ts';
import { onInterrupt } from '../cleanup.ts';

export const EGRESS_DOCKERFILE = 'docker/Dockerfile.egress';

async function dockerfileHash(): Promise<string> {
  const text = await fs.readFile(path.join(PROJECT_ROOT, EGRESS_DOCKERFILE));
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

function whyRebuild(info: ImageInfo | undefined, baseImage: string, hash: string, rebuild: boolean): string | undefined {
  if (!info) return 'it does not exist yet';
  if (rebuild) return '--rebuild-base was given';
  const found = info.Config.Labels ?? {};
  if (found[labels.egressDockerfile] !== hash) return 'its Dockerfile changed';
  if (found[labels.baseImage] !== baseImage) return `it was built from ${found[labels.baseImage] ?? 'another base image'}`;
  if (!/^\d+:\d+$/.test(found[labels.egressUser] ?? '')) return 'it does not name its user';
  return undefined;
}

/** Builds para-egress when needed; returns whether it was built. The packages come from the base image's own sources. */
export async function ensureEgressImage(
  engine: Engine,
  options: { image: string; baseImage: string; rebuild: boolean; stream: boolean },
  log: (line: string) => void,
): Promise<boolean> {
  const hash = await dockerfileHash();
  const reason = whyRebuild(await engine.inspectImage(options.image), options.baseImage, hash, options.rebuild);
  if (!reason) return false;
  log(`building the egress proxy image ${options.image} from ${options.baseImage} (${reason})`);
  const temporary = temporaryTag();
  const final = temporaryTag();
  const stopListening = onInterrupt(() => Promise.all([temporary, final].map((tag) => engine.removeImage(tag, { force: true }).catch(() => undefined))));
  // An empty folder as context: the Dockerfile copies nothing.
  const context = await fs.mkdtemp(path.join(os.tmpdir(), 'para-egress-'));
  try {
    await engine
      .buildImage({
        dockerfile: path.join(PROJECT_ROOT, EGRESS_DOCKERFILE),
        context,
        tag: temporary,
        stream: options.stream,
        network: config.buildNetwork,
        buildArgs: { BASE_IMAGE: options.baseImage },
      })
      .catch((error: unknown) => {
        if (error instanceof DockerError && error.kind === 'command-failed') {
          throw new ParaError(`building the egress proxy image ${options.image} failed`, {
            code: 'build-failed',
            cause: error,
            hint: `its packages (squid, socat) come from the base image's package sources through the build network ${config.buildNetwork} (PARA_BUILD_NETWORK); read the output above`,
          });
        }
        throw error;
      });
    // Its user's numeric IDs go into a label: sessions hand the proxy its configuration with that owner.
    const ids = (await engine.docker(['run', '--rm', '--network', 'none', '--entrypoint', 'id', temporary], { timeoutMs: config.timeouts.verifyMs })).stdout;
    const uid = /uid=(\d+)/.exec(ids)?.[1];
    const gid = /gid=(\d+)/.exec(ids)?.[1];
    if (!uid || !gid || uid === '0') throw new ParaError(`the egress proxy image has no unprivileged user (id said: ${ids.trim()})`, { code: 'build-failed' });
    const stamped = [
      `FROM ${temporary}`,
      ...Object.entries({
        [labels.managedBy]: MANAGED_BY,
        [labels.baseImage]: options.baseImage,
        [labels.egressDockerfile]: hash,
        [labels.egressUser]: `${uid}:${gid}`,
        [labels.builtAt]: new Date().toISOString(),
      }).map(([key, value]) => `LABEL ${key}=${JSON.stringify(value)}`),
    ].join('\n');
    await engine.docker(['build', '-q', '-t', final, '-'], { input: `${stamped}\n`, timeoutMs: config.timeouts.buildMs, env: { DOCKER_BUILDKIT: '0' } });
    await engine.removeImage(temporary, { force: true }).catch(() => undefined);
    await promoteImage(engine, final, options.image);
    return true;
  } finally {
    for (const tag of [temporary, final]) await engine.removeImage(tag, { force: true }).catch(() => undefined);
    await fs.rm(context, { recursive: true, force: true });
    stopListening();
  }
}
