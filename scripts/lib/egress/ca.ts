// The host's extra CA (a corporate network's intercepting CA): the proxy only tunnels, so claude
// in a session (or in the online check) must trust what the host's Node trusts.
import path from 'node:path';
import fs from 'fs-extra';
import type { Mount } from '../engine/spec.ts';

/** Where the host's extra CA (NODE_EXTRA_CA_CERTS) is mounted in the session, for claude. */
export const SESSION_CA_FILE = '/etc/para/extra-ca-certificates.pem';

/**
 * The host's NODE_EXTRA_CA_CERTS (a corporate network's intercepting CA), mounted read-only so
 * claude in the session trusts it too. Certificates only: a file holding a private key is refused.
 */
export async function extraCa(
  warn: (message: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ mounts: Mount[]; env: Record<string, string> }> {
  const file = env.NODE_EXTRA_CA_CERTS;
  if (!file) return { mounts: [], env: {} };
  const source = path.resolve(file);
  const stat = await fs.stat(source).catch(() => undefined);
  if (!stat?.isFile() || stat.size > 4 * 1024 * 1024) {
    warn(`NODE_EXTRA_CA_CERTS names ${source}, which is not a readable certificate file: the session does not get it`);
    return { mounts: [], env: {} };
  }
  const text = await fs.readFile(source, 'utf8').catch(() => '');
  if (!text.includes('-----BEGIN CERTIFICATE-----') || /PRIVATE KEY/.test(text)) {
    warn(`NODE_EXTRA_CA_CERTS (${source}) does not hold certificates only: the session does not get it`);
    return { mounts: [], env: {} };
  }
  return { mounts: [{ type: 'bind', source, target: SESSION_CA_FILE, readonly: true }], env: { NODE_EXTRA_CA_CERTS: SESSION_CA_FILE } };
}
