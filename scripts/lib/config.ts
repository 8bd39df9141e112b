// Names, labels, defaults and timeouts in one place; each default has an environment override.
const env = process.env;

function positiveInt(name: string, fallback: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value <= 0) {
    throw new Error(`${name} must be a positive integer (milliseconds), got "${raw}"`);
  }
  return value;
}

export const config = {
  /** The image sessions start from, holding the Claude login. */
  authenticatedImage: env.PARA_IMAGE || 'para-authenticated:latest',
  /** The image with the claude CLI and the non-root user, without credentials. */
  claudeImage: env.PARA_CLAUDE_IMAGE || 'para-claude:latest',
  /** The OS image para-claude is built on; any Debian-like image with a shell. */
  baseImage: env.BASE_IMAGE || 'debian:bookworm-slim',
  /** Home and user of the agent inside the image. */
  containerUser: 'para',
  containerHome: '/home/para',
  /** UID used when the host user is root: the agent never runs as root. */
  rootHostUid: 1000,
  rootHostGid: 1000,
  dockerfile: 'docker/Dockerfile',
  authenticatedDockerfile: 'docker/Dockerfile.authenticated',
  /** Default limits of a session container (--memory, --cpus, --pids-limit). */
  limits: {
    memory: env.PARA_MEMORY || '4g',
    cpus: env.PARA_CPUS || '2',
    pidsLimit: positiveInt('PARA_PIDS_LIMIT', 1024),
  },
  /** Committing a session folder's files as data (finish, cancel). */
  snapshot: {
    /** A file larger than this stays out of the commit (the folder is kept instead). */
    maxFileBytes: positiveInt('PARA_SNAPSHOT_MAX_FILE_MB', 1024) * 1024 * 1024,
    timeoutMs: positiveInt('PARA_SNAPSHOT_TIMEOUT_MS', 10 * 60_000),
  },
  timeouts: {
    /** A docker command that should answer quickly (inspect, ps, tag). */
    dockerQuickMs: positiveInt('PARA_DOCKER_TIMEOUT_MS', 30_000),
    /** `claude auth status` inside an image. */
    verifyMs: positiveInt('PARA_VERIFY_TIMEOUT_MS', 60_000),
    /** A whole image build. */
    buildMs: positiveInt('PARA_BUILD_TIMEOUT_MS', 30 * 60_000),
  },
} as const;

export const LABEL_PREFIX = 'dev.para.';

export const labels = {
  managedBy: `${LABEL_PREFIX}managed-by`,
  session: `${LABEL_PREFIX}session`,
  repo: `${LABEL_PREFIX}repo`,
  builtAt: `${LABEL_PREFIX}built-at`,
  authMethod: `${LABEL_PREFIX}auth-method`,
  credentialsSource: `${LABEL_PREFIX}credentials-source`,
  credentialsExpiresAt: `${LABEL_PREFIX}credentials-expires-at`,
  subscriptionType: `${LABEL_PREFIX}subscription-type`,
  baseImage: `${LABEL_PREFIX}base-image`,
  uid: `${LABEL_PREFIX}uid`,
  gid: `${LABEL_PREFIX}gid`,
  /** Where para-claude's claude CLI came from: npm, or binary:<size>:<mtime>. */
  claudeSource: `${LABEL_PREFIX}claude-source`,
  /** Marks temporary resources so a crash leaves something findable. */
  temporary: `${LABEL_PREFIX}temporary`,
} as const;

export const MANAGED_BY = 'para';

/** Extra labels for every container para creates (PARA_EXTRA_LABELS="k=v,k2=v2"), e.g. a CI job id. */
export function extraLabels(raw = env.PARA_EXTRA_LABELS ?? ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of raw.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new Error(`PARA_EXTRA_LABELS must look like key=value,key2=value2; got "${pair}"`);
    const key = pair.slice(0, eq);
    if (key.startsWith(LABEL_PREFIX)) {
      const own = Object.values(labels) as string[];
      if (own.includes(key)) throw new Error(`PARA_EXTRA_LABELS cannot override ${key}`);
    }
    out[key] = pair.slice(eq + 1);
  }
  return out;
}

/** Labels of a short-lived container para makes for itself (an auth check, a login). */
export function temporaryLabels(purpose: string): Record<string, string> {
  return { ...extraLabels(), [labels.managedBy]: MANAGED_BY, [labels.temporary]: purpose };
}
