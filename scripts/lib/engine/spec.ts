// What para asks an engine to run, as data: a container's image, command, user, privileges,
// limits, network, environment and mounts. The docker engine turns a spec into `docker run`
// arguments (runArgs); another backend would turn the same spec into its own calls.

export interface Mount {
  type: 'bind' | 'volume';
  source: string;
  target: string;
  readonly: boolean;
  /** Labels of a volume docker creates for this mount. */
  labels?: Record<string, string>;
  /** Fill a new volume with what the image holds at the target (its owner included). */
  copyFromImage?: boolean;
}

export interface RunSpec {
  image: string;
  /** The container's name; absent: the engine picks one (a throwaway container). */
  name?: string;
  labels: Record<string, string>;
  /** The command (after the image); with `entrypoint`, its arguments. */
  command?: string[];
  entrypoint?: string;
  /** uid[:gid] or a user name; absent: the image's user. */
  user?: string;
  workdir?: string;
  hostname?: string;
  env?: Record<string, string>;
  /** none, a docker network, `container:NAME` (another container's namespace), or absent: the engine's default. */
  network?: string | null;
  dns?: string[];
  mounts?: Mount[];
  /** Memory-backed folders (never on disk), owned by uid:gid with mode. */
  tmpfs?: Array<{ target: string; uid: number; gid: number; mode: string; size: string }>;
  /** A tiny init as PID 1 (reaps the agent's zombies, forwards signals). */
  init?: boolean;
  readOnly?: boolean;
  /** Every capability dropped, these added back. */
  capabilities?: { drop: 'ALL'; add: string[] };
  noNewPrivileges?: boolean;
  memory?: string;
  cpus?: string;
  pidsLimit?: number;
  /** Capped logs (the agent can make a container log as fast as it likes). */
  logs?: { maxSize: string; maxFiles: number };
  /** The OCI runtime (runc, runsc); absent: the engine's default. */
  runtime?: string | null;
  /** Removed when its command ends (throwaway containers). */
  remove?: boolean;
  /** Keep standard input open (a bundle or a tar streamed in). */
  interactive?: boolean;
  tty?: boolean;
}

/** `--label key=value` for each label, for docker run, create and build. */
export function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([key, value]) => ['--label', `${key}=${value}`]);
}

/** One --mount value; fields are CSV-quoted so paths with commas, quotes or spaces survive. */
export function mountArg(mount: Mount): string[] {
  const field = (text: string) => `"${text.replace(/"/g, '""')}"`;
  const fields = [`type=${mount.type}`, field(`source=${mount.source}`), field(`target=${mount.target}`)];
  if (mount.readonly) fields.push('readonly');
  if (mount.type === 'volume' && !mount.copyFromImage) fields.push('volume-nocopy');
  for (const [key, value] of Object.entries(mount.labels ?? {})) fields.push(field(`volume-label=${key}=${value}`));
  return ['--mount', fields.join(',')];
}

/**
 * The options of `docker run` / `docker create` for a spec, without the verb: the image and its
 * command come last. Nothing is ever pulled (para's images are built locally).
 */
export function runArgs(spec: RunSpec): string[] {
  const args: string[] = [];
  if (spec.remove) args.push('--rm');
  if (spec.interactive) args.push('--interactive');
  if (spec.tty) args.push('--tty');
  if (spec.init) args.push('--init');
  if (spec.name) args.push('--name', spec.name);
  if (spec.hostname) args.push('--hostname', spec.hostname);
  args.push(...labelArgs(spec.labels));
  if (spec.runtime) args.push('--runtime', spec.runtime);
  if (spec.readOnly) args.push('--read-only');
  if (spec.user !== undefined) args.push('--user', spec.user);
  if (spec.noNewPrivileges) args.push('--security-opt', 'no-new-privileges');
  if (spec.capabilities) {
    args.push('--cap-drop', spec.capabilities.drop);
    for (const cap of spec.capabilities.add) args.push('--cap-add', cap);
  }
  if (spec.memory) args.push('--memory', spec.memory);
  if (spec.cpus) args.push('--cpus', spec.cpus);
  if (spec.pidsLimit !== undefined) args.push('--pids-limit', String(spec.pidsLimit));
  if (spec.logs) args.push('--log-driver', 'json-file', '--log-opt', `max-size=${spec.logs.maxSize}`, '--log-opt', `max-file=${spec.logs.maxFiles}`);
  if (spec.network) args.push('--network', spec.network);
  for (const server of spec.dns ?? []) args.push('--dns', server);
  for (const [key, value] of Object.entries(spec.env ?? {})) args.push('--env', `${key}=${value}`);
  for (const mount of spec.mounts ?? []) args.push(...mountArg(mount));
  for (const t of spec.tmpfs ?? []) args.push('--tmpfs', `${t.target}:rw,noexec,nosuid,nodev,size=${t.size},uid=${t.uid},gid=${t.gid},mode=${t.mode}`);
  if (spec.workdir) args.push('--workdir', spec.workdir);
  if (spec.entrypoint !== undefined) args.push('--entrypoint', spec.entrypoint);
  args.push('--pull', 'never', spec.image, ...(spec.command ?? []));
  return args;
}
