// The claude CLI for an image, the default route: the native binary from the npm package that
// matches the engine's architecture and the base image's C library, fetched by the host's npm,
// checked, and staged, so the image build itself needs no network, Node or npm.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import type { Engine } from '../engine/engine.ts';
import { ParaError } from '../errors.ts';
import { npmPack } from './npm.ts';

const ARCH: Record<string, string> = { amd64: 'x64', x86_64: 'x64', arm64: 'arm64', aarch64: 'arm64' };

/** musl (Alpine-like) or glibc, read from the base image itself without network. */
async function baseLibc(engine: Engine, baseImage: string): Promise<'musl' | 'glibc'> {
  const result = await engine.docker(
    ['run', '--rm', '--network', 'none', '--entrypoint', 'sh', baseImage, '-c', 'ls /lib/ld-musl-* >/dev/null 2>&1 && echo musl || echo glibc'],
    {
      allowFailure: true,
    },
  );
  return result.stdout.trim() === 'musl' ? 'musl' : 'glibc';
}

export interface ClaudePackage {
  /** npm package name and resolved version, e.g. @anthropic-ai/claude-code-linux-x64@2.1.197. */
  spec: string;
  version: string;
  /** The staged binary. */
  file: string;
}

/** Which platform package fits the engine and the base image. */
export async function claudePackageName(engine: Engine, baseImage: string): Promise<string> {
  const server = await engine.serverVersion();
  const arch = ARCH[server.Arch ?? ''];
  if (!arch || (server.Os && server.Os !== 'linux')) {
    throw new ParaError(`the Docker engine runs ${server.Os ?? '?'}/${server.Arch ?? '?'}, for which there is no claude CLI package`, {
      code: 'unsupported-engine',
      hint: 'use an engine on linux/amd64 or linux/arm64, or pass a Linux claude binary: make image CLAUDE_BINARY=<path>',
    });
  }
  return `@anthropic-ai/claude-code-linux-${arch}${(await baseLibc(engine, baseImage)) === 'musl' ? '-musl' : ''}`;
}

/** Fetches the package with the host's npm into `dir` and unpacks its binary; `version` may be "latest". */
export async function fetchClaudePackage(name: string, version: string, dir: string): Promise<ClaudePackage> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const packed = await npmPack(`${name}@${version}`, dir);
  const unpacked = path.join(dir, 'unpacked');
  await fs.mkdir(unpacked, { recursive: true });
  await execa('tar', ['-xzf', path.join(dir, packed.filename), '-C', unpacked, '--no-same-owner', 'package/claude']);
  const file = path.join(unpacked, 'package', 'claude');
  const stat = await fs.lstat(file).catch(() => undefined);
  const head = stat?.isFile() ? (await fs.readFile(file)).subarray(0, 4) : Buffer.alloc(0);
  if (!stat?.isFile() || stat.size < 1_000_000 || !head.equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) {
    throw new ParaError(`${name}@${packed.version} holds no Linux claude binary`, {
      code: 'claude-package-broken',
      hint: 'pass another version (CLAUDE_VERSION=...) or a binary (CLAUDE_BINARY=...)',
    });
  }
  await fs.chmod(file, 0o755);
  return { spec: `${packed.name}@${packed.version}`, version: packed.version, file };
}
