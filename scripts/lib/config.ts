// Names, labels, defaults and timeouts in one place; each default has an environment override.
// Overrides are read when a value is used, not at import: a bad one is a usage error the
// script's handler reports (exit code 2), naming the variable.
import { hostname } from 'node:os';
import { UsageError } from './errors.ts';

/** How a session gets the login: through the engine's credential broker (none in the container), or baked into its image. */
export type CredentialsMode = 'broker' | 'image';

function setting(name: string): string | undefined {
  const raw = process.env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

function positiveInt(name: string, fallback: number, unit: string): number {
  const raw = setting(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value <= 0) {
    throw new UsageError(
      `${name} must be a positive whole number of ${unit}, got ${JSON.stringify(raw)}`,
      `set ${name} to a number such as ${fallback}, or unset it`,
    );
  }
  return value;
}

/** A size docker's --memory accepts: digits and an optional b, k, m or g. */
export function isMemorySize(value: string): boolean {
  return /^\d+(\.\d+)?[bkmg]?$/i.test(value);
}

/** A CPU count docker's --cpus accepts: a positive decimal number. */
export function isCpuCount(value: string): boolean {
  return /^\d+(\.\d+)?$/.test(value) && Number(value) > 0;
}

function checked(name: string, fallback: string, valid: (value: string) => boolean, form: string): string {
  const raw = setting(name);
  if (raw === undefined) return fallback;
  if (!valid(raw)) throw new UsageError(`${name} must be ${form}, got ${JSON.stringify(raw)}`, `set ${name} to a value such as ${fallback}, or unset it`);
  return raw;
}

export const config = {
  /** The image sessions start from, holding the Claude login. */
  get authenticatedImage(): string {
    return setting('PARA_IMAGE') ?? 'para-authenticated:latest';
  },
  /** The image with the claude CLI and the non-root user, without credentials. */
  get claudeImage(): string {
    return setting('PARA_CLAUDE_IMAGE') ?? 'para-claude:latest';
  },
  /** The egress proxy's image (squid and socat), built by make image from the same base. */
  get egressImage(): string {
    return setting('PARA_EGRESS_IMAGE') ?? 'para-egress:latest';
  },
  /** The credential broker's container name on each engine (a network's broker adds a suffix). */
  get brokerName(): string {
    return checked('PARA_BROKER', 'para-broker', (v) => /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,40}$/.test(v), 'a container name (letters, digits, _ . -)');
  },
  /**
   * How long before its expiry para renews a login make login made, for a token that lives `lifeMs`:
   * 30 minutes (claude's own tokens live about eight hours), never more than half a shorter token's
   * life (a token shorter than the margin would be renewed at every look); PARA_LOGIN_RENEW_BEFORE_MS as set.
   */
  loginRenewBeforeMs(lifeMs: number): number {
    if (setting('PARA_LOGIN_RENEW_BEFORE_MS') !== undefined) return positiveInt('PARA_LOGIN_RENEW_BEFORE_MS', 30 * 60_000, 'milliseconds');
    return Math.min(30 * 60_000, Math.max(0, lifeMs / 2));
  },
  /** How sessions get the login: broker (the default: no session holds it) or image (baked in, the original mode). */
  get credentialsMode(): CredentialsMode {
    return checked('PARA_CREDENTIALS', 'broker', (v) => v === 'broker' || v === 'image', 'broker or image') as CredentialsMode;
  },
  /** The network docker build uses to install the proxy's packages. */
  get buildNetwork(): string {
    return setting('PARA_BUILD_NETWORK') ?? 'host';
  },
  /** The OS image para-claude is built on; any Debian-like image with a shell. */
  get baseImage(): string {
    return setting('BASE_IMAGE') ?? 'debian:bookworm-slim';
  },
  /** Home and user of the agent inside the image. */
  containerUser: 'para',
  containerHome: '/home/para',
  /** UID used when the host user is root: the agent never runs as root. */
  rootHostUid: 1000,
  rootHostGid: 1000,
  dockerfile: 'docker/Dockerfile',
  /** Default limits of a session container (--memory, --cpus, --pids-limit). */
  limits: {
    get memory(): string {
      return checked('PARA_MEMORY', '4g', isMemorySize, 'a size such as 4g or 512m (digits, then b, k, m or g)');
    },
    get cpus(): string {
      return checked('PARA_CPUS', '2', isCpuCount, 'a positive number of CPUs such as 2 or 0.5');
    },
    get pidsLimit(): number {
      return positiveInt('PARA_PIDS_LIMIT', 1024, 'processes');
    },
  },
  /** The most the agent's work may weigh when it is brought back (a bundle): more is refused, not stored. */
  get maxBundleBytes() {
    return positiveInt('PARA_MAX_BUNDLE_MB', 4096, 'megabytes') * 1024 * 1024;
  },
  /** Committing a session folder's files as data (finish, cancel). */
  snapshot: {
    /** A file larger than this stays out of the commit (the folder is kept instead). */
    get maxFileBytes(): number {
      return positiveInt('PARA_SNAPSHOT_MAX_FILE_MB', 1024, 'megabytes') * 1024 * 1024;
    },
    get timeoutMs(): number {
      return positiveInt('PARA_SNAPSHOT_TIMEOUT_MS', 10 * 60_000, 'milliseconds');
    },
  },
  timeouts: {
    /** A docker command that should answer quickly (inspect, ps, tag). */
    get dockerQuickMs(): number {
      return positiveInt('PARA_DOCKER_TIMEOUT_MS', 30_000, 'milliseconds');
    },
    /** Creating and starting a container (docker run, create, start): slower than a query on a busy engine (many starts at once). */
    get dockerRunMs(): number {
      return positiveInt('PARA_DOCKER_RUN_TIMEOUT_MS', 120_000, 'milliseconds');
    },
    /** `claude auth status` inside an image. */
    get verifyMs(): number {
      return positiveInt('PARA_VERIFY_TIMEOUT_MS', 60_000, 'milliseconds');
    },
    /** A whole image build. */
    get buildMs(): number {
      return positiveInt('PARA_BUILD_TIMEOUT_MS', 30 * 60_000, 'milliseconds');
    },
  },
} as const;

export const LABEL_PREFIX = 'dev.para.';

export const labels = {
  managedBy: `${LABEL_PREFIX}managed-by`,
  session: `${LABEL_PREFIX}session`,
  repo: `${LABEL_PREFIX}repo`,
  /** The repository's own id (para/repo-id in its git folder): the same path on another machine is another repository. */
  repoId: `${LABEL_PREFIX}repo-id`,
  builtAt: `${LABEL_PREFIX}built-at`,
  authMethod: `${LABEL_PREFIX}auth-method`,
  credentialsSource: `${LABEL_PREFIX}credentials-source`,
  credentialsExpiresAt: `${LABEL_PREFIX}credentials-expires-at`,
  /** A host login's account fingerprint (image/credentials.ts accountFingerprint): the broker follows the host's newer login of the same account. */
  credentialsAccount: `${LABEL_PREFIX}credentials-account`,
  subscriptionType: `${LABEL_PREFIX}subscription-type`,
  baseImage: `${LABEL_PREFIX}base-image`,
  uid: `${LABEL_PREFIX}uid`,
  gid: `${LABEL_PREFIX}gid`,
  /** Where para-claude's claude CLI came from: npm, or binary:<size>:<mtime>. */
  claudeSource: `${LABEL_PREFIX}claude-source`,
  /** What a session's container is for: egress-proxy or egress-forwarder (the session's own has none). */
  role: `${LABEL_PREFIX}role`,
  /** A credential broker's egress network (empty: the engine's default). */
  brokerNetwork: `${LABEL_PREFIX}broker-network`,
  /** The host proxy (host:port) a credential broker goes through, read when it was made (never its login). */
  brokerUpstream: `${LABEL_PREFIX}broker-upstream`,
  /** The login image a credential broker serves (make image refreshes the brokers of its tag). */
  brokerImage: `${LABEL_PREFIX}broker-image`,
  /** uid:gid of the egress proxy image's unprivileged user. */
  egressUser: `${LABEL_PREFIX}egress-user`,
  /** A repository's tools image: the hash of its .para/image folder and of para-claude's ID. */
  toolsKey: `${LABEL_PREFIX}tools-key`,
  /** A repository's session image: the tools image it is built on, and the login image its credentials came from. */
  toolsImage: `${LABEL_PREFIX}tools-image`,
  credentialsFrom: `${LABEL_PREFIX}credentials-from`,
  /** A hash of docker/Dockerfile.egress: the proxy image is rebuilt when it changes. */
  egressDockerfile: `${LABEL_PREFIX}egress-dockerfile`,
  /** Marks temporary resources so a crash leaves something findable. */
  temporary: `${LABEL_PREFIX}temporary`,
  /** host:pid of the process that made a temporary resource: a later run removes it once that process is gone. */
  owner: `${LABEL_PREFIX}owner`,
} as const;

export const MANAGED_BY = 'para';

/** Extra labels for every container para creates (PARA_EXTRA_LABELS="k=v,k2=v2"), e.g. a CI job id. */
export function extraLabels(raw = process.env.PARA_EXTRA_LABELS ?? ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of raw
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new UsageError(`PARA_EXTRA_LABELS must look like key=value,key2=value2; got ${JSON.stringify(pair)}`, 'fix or unset PARA_EXTRA_LABELS');
    const key = pair.slice(0, eq);
    if (key.startsWith(LABEL_PREFIX)) {
      const own = Object.values(labels) as string[];
      if (own.includes(key)) throw new UsageError(`PARA_EXTRA_LABELS cannot override ${key}, a label para sets itself`, `remove ${key} from PARA_EXTRA_LABELS`);
    }
    out[key] = pair.slice(eq + 1);
  }
  return out;
}

/** Labels of a short-lived container para makes for itself (an auth check, a login). */
export function temporaryLabels(purpose: string): Record<string, string> {
  // The owner (this machine and process) lets a later run remove it if this one is killed.
  return { ...extraLabels(), [labels.managedBy]: MANAGED_BY, [labels.temporary]: purpose, [labels.owner]: `${hostname()}:${process.pid}` };
}
