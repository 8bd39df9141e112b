// The one wrapper around the host's npm: it already carries the user's registry, proxy and CA
// settings (NODE_EXTRA_CA_CERTS, .npmrc), which a build inside the image would not have.
import { execa } from 'execa';
import { config } from '../config.ts';
import { ParaError } from '../errors.ts';
import { childEnv } from '../exec.ts';
import { traced } from '../trace.ts';

export interface PackedPackage {
  name: string;
  version: string;
  filename: string;
  integrity: string;
}

/** `npm pack SPEC` into `dir`: npm fetches the tarball and checks it against the registry's integrity. */
export async function npmPack(spec: string, dir: string): Promise<PackedPackage> {
  const args = ['pack', spec, '--pack-destination', dir, '--json', '--ignore-scripts'];
  const result = await traced('npm', args, () =>
    execa('npm', args, { cwd: dir, env: childEnv(), extendEnv: false, reject: false, stdin: 'ignore', timeout: config.timeouts.buildMs }),
  );
  if ((result as { code?: string }).code === 'ENOENT') {
    throw new ParaError('npm is not installed: it fetches the claude CLI for the image', {
      code: 'npm-not-installed',
      hint: 'install Node.js with npm, or pass a Linux claude binary: make image CLAUDE_BINARY=<path>',
    });
  }
  const stderr = String(result.stderr ?? '').trim();
  if (result.exitCode !== 0) {
    throw new ParaError(
      `npm could not fetch ${spec}: ${
        stderr
          .split('\n')
          .filter((l) => /npm (error|ERR)/.test(l))
          .slice(0, 3)
          .join(' ') || stderr.split('\n').pop()
      }`,
      {
        code: 'npm-pack-failed',
        hint: 'check npm can reach its registry from here (npm view @anthropic-ai/claude-code version; your .npmrc, proxy and NODE_EXTRA_CA_CERTS apply), or pass a Linux claude binary: make image CLAUDE_BINARY=<path>',
      },
    );
  }
  try {
    const [packed] = JSON.parse(String(result.stdout)) as PackedPackage[];
    if (packed?.filename && packed.version && packed.integrity) return packed;
  } catch {
    // fall through
  }
  throw new ParaError(`npm pack ${spec} printed no package description`, { code: 'npm-pack-failed', hint: String(result.stdout).slice(0, 200) });
}
