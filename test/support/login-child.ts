// A make login whose interactive part is replaced by a fake login placed in the container (as the
// login tests do), run as its own process so a test can kill it at any point.
import fs from 'fs-extra';
import os from 'node:os';
import path from 'node:path';
import { docker } from '../../scripts/lib/engine/docker.ts';
import { commitLogin, withLoginContainer } from '../../scripts/lib/image/login.ts';
import { FAKE_REFRESH, FAKE_TOKEN } from './images.ts';
import { shellEngine } from '../../scripts/lib/engine/engine.ts';

const [claudeImage, tag] = process.argv.slice(2);
await withLoginContainer(shellEngine, claudeImage, { offline: true }, async (container) => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'para-test-login-'));
  const file = path.join(dir, 'credentials.json');
  const credentials = {
    claudeAiOauth: {
      accessToken: FAKE_TOKEN,
      refreshToken: FAKE_REFRESH,
      expiresAt: Date.now() + 86_400_000,
      scopes: ['user:inference'],
      subscriptionType: 'pro',
    },
  };
  await fs.writeFile(file, JSON.stringify(credentials), { mode: 0o600 });
  await docker(['cp', file, `${container}:/home/para/.claude/.credentials.json`]);
  await fs.rm(dir, { recursive: true, force: true });
  await docker(['exec', '-u', 'root', container, 'chown', 'para:para', '/home/para/.claude/.credentials.json']);
  await commitLogin(shellEngine, container, { tag, claudeImage });
});
