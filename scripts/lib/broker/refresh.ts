// A login para itself keeps fresh: one made by make login. Nobody else holds its refresh token (the
// login container is gone), so without this the broker's login would simply expire. The refresh is
// the official CLI's own: claude runs in a container from the login image, on the broker's network,
// and renews its credentials file as it always does. para then saves that home as the login image
// (so the used refresh token is never read again: it is single use) and gives the brokers the new
// access token. Sessions never take part: they hold a placeholder and cannot reach the token host.
//
// One refresh at a time per login, engine-wide: the refresh container's fixed name is the lock
// (docker create of a taken name fails). A refresh container left by a killed run may hold the only
// current refresh token: the next look finishes its work (saves its home) instead of throwing it away.
import { createHash } from 'node:crypto';
import os from 'node:os';
import { makeCommand } from '../cli.ts';
import { config, extraLabels, labels, MANAGED_BY } from '../config.ts';
import type { Engine, ImageInfo } from '../engine/engine.ts';
import { runArgs } from '../engine/spec.ts';
import { ParaError } from '../errors.ts';
import { egressDns } from '../egress/rules.ts';
import { assertLoggedIn, imageAuthStatus } from '../image/auth-status.ts';
import { promoteImage, temporaryTag } from '../image/build.ts';
import { buildFinalImage } from '../image/login.ts';
import { ownerGone } from '../image/sweep.ts';
import { tarArchive } from '../tar.ts';
import { type BrokerState, brokerNames, brokerUpstream, ensureBroker, extraCaText, refreshBrokers } from './broker.ts';

const ROLE = 'login-refresh';
/** How long a refresh may take (claude starting, one token request) before para gives up on it. */
const REFRESH_TIMEOUT_S = 90;
const CA_PATH = '/tmp/para-extra-ca.pem';

/**
 * What runs in the refresh container, as the image's user. claude renews a login that is near its
 * expiry whenever it starts a command that needs the account (claude mcp list does, and asks nothing
 * of the model); the copy's expiry is set in the past so that it renews now. Its output is only the
 * exit code and the new expiry: never the file, so the container's log holds no secret.
 */
const REFRESH_SCRIPT = [
  'f="$HOME/.claude/.credentials.json"',
  '[ -f "$f" ] || { echo "para-refresh: no-credentials-file"; exit 3; }',
  `sed -i -E 's/"expiresAt"[[:space:]]*:[[:space:]]*[0-9]+/"expiresAt":1/' "$f"`,
  // Behind the host's proxy: its address (and login) from a file para put in, never the container's environment.
  '[ -s /tmp/para-proxy ] && { HTTPS_PROXY=$(cat /tmp/para-proxy); export HTTPS_PROXY; }',
  `cd "$HOME"; timeout ${REFRESH_TIMEOUT_S} claude mcp list >/dev/null 2>&1; echo "para-refresh: claude-exit $?"`,
  `e=$(grep -oE '"expiresAt"[[:space:]]*:[[:space:]]*[0-9]+' "$f" 2>/dev/null | head -n 1 | grep -oE '[0-9]+$'); echo "para-refresh: expires-at \${e:-none}"`,
].join('\n');

/** A login para renews: one make login made (its refresh token is nobody else's). A host's login is the host's claude's to renew. */
export function renewedByPara(info: ImageInfo | undefined): boolean {
  const l = info?.Config.Labels ?? {};
  // A repository's session image holds a copy, made on its tools: never renewed (nor run as a refresh container).
  if (l[labels.credentialsFrom] || l[labels.toolsImage] || l[labels.repo]) return false;
  return l[labels.credentialsSource] === 'login' && l[labels.authMethod] === 'claude.ai';
}

/** When the login of an image expires (its label), if para renews it. */
export function renewableExpiry(info: ImageInfo | undefined): number | undefined {
  if (!renewedByPara(info)) return undefined;
  const at = Date.parse(info?.Config.Labels?.[labels.credentialsExpiresAt] ?? '');
  return Number.isFinite(at) ? at : undefined;
}

export function renewalDue(info: ImageInfo | undefined, now = Date.now()): boolean {
  const at = renewableExpiry(info);
  if (at === undefined) return false;
  // The login's life: from when its image was made (make login, or para's last renewal) to its expiry.
  const made = Date.parse(info?.Config.Labels?.[labels.builtAt] ?? '');
  return at - now < config.loginRenewBeforeMs(Number.isFinite(made) ? at - made : Number.POSITIVE_INFINITY);
}

/** The refresh container (the lock) of a login image's tag on an engine. */
export function refreshContainerName(tag: string): string {
  return `${config.brokerName}-refresh-${createHash('sha256').update(tag).digest('hex').slice(0, 10)}`;
}

export interface Renewal {
  /** The login was renewed (by this call or by the finished leftover of an earlier one): its new expiry. */
  renewed?: number;
  /** Not renewed although due, and why (a sentence for the user). */
  skipped?: string;
  /** The brokers that now serve the renewed login. */
  brokers: string[];
}

function refreshFailed(tag: string, what: string): ParaError {
  return new ParaError(`the login in ${tag} could not be renewed: ${what}`, {
    code: 'login-refresh',
    hint: `sessions keep the current login until it expires; check that the engine reaches the login service, or run ${makeCommand('login')} again`,
  });
}

/**
 * Sessions started with --credentials image from this login (from it, or from a repository's
 * session image that copied it) hold its refresh token: renewing it would log them out, and their
 * own renewal would revoke the login.
 */
async function copyHolders(engine: Engine, imageId: string): Promise<string[]> {
  const quick = { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs };
  const copies = await engine.docker(['images', '--quiet', '--no-trunc', '--filter', `label=${labels.credentialsFrom}=${imageId}`], quick);
  const holders = new Set<string>();
  for (const image of [imageId, ...copies.stdout.split('\n').filter(Boolean)]) {
    const r = await engine.docker(
      ['ps', '-a', '--filter', `ancestor=${image}`, '--filter', `label=${labels.session}`, '--format', `{{.Label "${labels.session}"}}`],
      quick,
    );
    for (const name of r.exitCode === 0 ? r.stdout.split('\n') : []) if (name) holders.add(name);
  }
  return [...holders].sort();
}

/** Who holds the lock: host:pid of the command renewing (not the sweep's owner label: a renewed login must never be swept away). */
const HOLDER_LABEL = `${labels.role}-holder`;

/**
 * Waits for the command holding the lock: true once it is done (the container gone). false: its
 * command is gone, or took too long, and left the container stopped: its work is to be finished.
 */
async function waitForHolder(engine: Engine, name: string, tag: string): Promise<boolean> {
  for (const end = Date.now() + (REFRESH_TIMEOUT_S + 60) * 1000; ; ) {
    const info = await engine.inspectContainer(name);
    if (!info) return true;
    if (!info.State.Running && (ownerGone(info.Config.Labels?.[HOLDER_LABEL]) || Date.now() > end)) return false;
    if (Date.now() > end) throw refreshFailed(tag, `its refresh container ${name} is still running; the next para command finishes it`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** The new expiry the refresh container reported (its log: the two para-refresh lines only). */
async function reported(engine: Engine, name: string): Promise<{ claudeExit?: string; expiresAt?: number }> {
  const log = await engine.docker(['logs', name], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
  const claudeExit = /para-refresh: claude-exit (\d+)/.exec(log.stdout)?.[1];
  const at = /para-refresh: expires-at (\d+)/.exec(log.stdout)?.[1];
  return { claudeExit, expiresAt: at === undefined ? undefined : Number(at) };
}

/**
 * Saves what a finished refresh container holds as the login image (when claude renewed the login),
 * gives the brokers the new login, then removes the container. A container whose login was not
 * renewed is removed (its refresh token was not used); one that was renewed stays until its home is
 * saved, so that a failure here loses nothing (the next look tries again).
 */
async function finish(engine: Engine, name: string, tag: string, log: (line: string) => void): Promise<Renewal> {
  if ((await engine.inspectContainer(name))?.State.Running)
    throw refreshFailed(tag, `its refresh container ${name} is still running; the next para command finishes it`);
  let report = await reported(engine, name);
  if (!report.claudeExit) {
    // Stopped before its script ended (its command killed before it started it, the engine restarted):
    // claude may have renewed the file already, so it is run again on what the file holds now, never thrown away.
    const left = await engine.inspectContainer(name);
    await copyRunFiles(engine, name, left ? await engine.inspectImage(left.Image) : undefined, left?.Config.Labels?.[labels.brokerNetwork] || null);
    await engine.docker(['start', '--attach', name], { allowFailure: true, timeoutMs: (REFRESH_TIMEOUT_S + 30) * 1000 });
    report = await reported(engine, name);
  }
  const { claudeExit, expiresAt } = report;
  const [current, container] = await Promise.all([engine.inspectImage(tag), engine.inspectContainer(name)]);
  // make login ran again meanwhile: the tag names another login, which this container's must not replace.
  if (!current || container?.Image !== current.Id) {
    await engine.removeContainer(name);
    return { brokers: [] };
  }
  // The script sets the copy's expiry in the past: a later one is claude's renewal (whatever its length).
  if (expiresAt === undefined || expiresAt <= Date.now()) {
    await engine.removeContainer(name);
    throw refreshFailed(
      tag,
      `claude in the refresh container did not renew it: the login service refused it or could not be reached (claude exit code ${claudeExit ?? 'none'}, expiry ${expiresAt ?? 'none'}); run ${makeCommand('login')} again if it keeps failing`,
    );
  }
  const candidate = temporaryTag();
  try {
    const imageLabels = {
      ...(current.Config.Labels ?? {}),
      [labels.credentialsExpiresAt]: new Date(expiresAt).toISOString(),
      [labels.builtAt]: new Date().toISOString(),
    };
    log(`saving the renewed login as ${tag}`);
    await buildFinalImage(engine, name, config.claudeImage, candidate, imageLabels);
    assertLoggedIn(await imageAuthStatus(engine, candidate), 'claude.ai', tag);
    await promoteImage(engine, candidate, tag);
  } finally {
    await engine.removeImage(candidate, { force: true });
  }
  await engine.removeContainer(name);
  // The image the refresh container ran from holds the used refresh token: it goes unless something else still uses it.
  await engine.docker(['image', 'rm', current.Id], { allowFailure: true, timeoutMs: config.timeouts.dockerQuickMs });
  return { renewed: expiresAt, brokers: await refreshBrokers(engine, tag) };
}

/**
 * Renews the login of `tag` when para is the one that renews it and it is due (or `force`), on the
 * network its broker uses. Safe to call from parallel commands: one refreshes, the others wait for it.
 */
export async function renewLogin(
  engine: Engine,
  tag: string,
  network: string | null,
  options: { force?: boolean; log?: (line: string) => void } = {},
): Promise<Renewal> {
  const log = options.log ?? (() => undefined);
  const name = refreshContainerName(tag);
  const [left, info] = await Promise.all([engine.inspectContainer(name), engine.inspectImage(tag)]);
  if (left) {
    if (left.Config.Labels?.[labels.role] !== ROLE)
      throw new ParaError(`a container named ${name} exists and is not para's login refresh`, {
        code: 'refresh-name-taken',
        hint: `remove or rename it (docker rm -f ${name}), or set PARA_BROKER to another name`,
      });
    // Another command is renewing it now: its result is the one to use. One that is gone left its work to finish.
    if (await waitForHolder(engine, name, tag)) return { brokers: [] };
    return finish(engine, name, tag, log);
  }
  if (!renewedByPara(info) || !info) return { brokers: [] };
  if (!options.force && !renewalDue(info)) return { brokers: [] };
  const holders = await copyHolders(engine, info.Id);
  if (holders.length)
    return {
      brokers: [],
      skipped: `${holders.length === 1 ? 'the session' : 'the sessions'} ${holders.join(', ')} (--credentials image) ${holders.length === 1 ? 'holds' : 'hold'} a copy of this login: renewing it would log ${holders.length === 1 ? 'it' : 'them'} out; finish or cancel ${holders.length === 1 ? 'it' : 'them'}, or run ${makeCommand('login')} again`,
    };
  const caText = await extraCaText();
  const upstream = brokerUpstream(network);
  const created = await engine.docker(
    [
      'create',
      ...runArgs({
        image: info.Id,
        name,
        labels: {
          ...extraLabels(),
          [labels.managedBy]: MANAGED_BY,
          [labels.role]: ROLE,
          [labels.brokerImage]: tag,
          [labels.brokerNetwork]: network ?? '',
          [HOLDER_LABEL]: `${os.hostname()}:${process.pid}`,
        },
        network,
        dns: egressDns(),
        capabilities: { drop: 'ALL', add: [] },
        noNewPrivileges: true,
        memory: '1g',
        pidsLimit: 256,
        env: {
          CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
          ...(caText ? { NODE_EXTRA_CA_CERTS: CA_PATH } : {}),
          ...(upstream?.direct.length ? { NO_PROXY: upstream.direct.join(',') } : {}),
        },
        entrypoint: 'sh',
        command: ['-c', REFRESH_SCRIPT],
      }),
    ],
    { allowFailure: true, timeoutMs: config.timeouts.dockerRunMs },
  );
  if (created.exitCode !== 0) {
    if (!/Conflict|already in use/i.test(created.stderr)) throw refreshFailed(tag, created.stderr.trim().split('\n').pop() ?? 'docker create failed');
    // Another command took the lock first: wait for it.
    if (await waitForHolder(engine, name, tag)) return { brokers: [] };
    return finish(engine, name, tag, log);
  }
  // Holding the lock: another command may have renewed it just before.
  const now = await engine.inspectImage(tag);
  if (now?.Id !== info.Id) {
    await engine.removeContainer(name);
    return { brokers: [] };
  }
  await copyRunFiles(engine, name, info, network);
  log(`renewing the login in ${tag} (claude in a refresh container)`);
  await engine.docker(['start', '--attach', name], { allowFailure: true, timeoutMs: (REFRESH_TIMEOUT_S + 30) * 1000 });
  return finish(engine, name, tag, log);
}

/**
 * list, watch, the doctor: each running broker whose login para renews and that is due gets it
 * renewed. Returns what happened per broker image (renewed, or skipped and why).
 */
export async function renewBrokerLogins(engine: Engine, log?: (line: string) => void): Promise<Array<{ image: string } & Renewal>> {
  const [brokers, egress] = await Promise.all([
    engine.listContainers({ [labels.managedBy]: MANAGED_BY, [labels.role]: 'broker' }),
    engine.inspectImage(config.egressImage),
  ]);
  const out: Array<{ image: string } & Renewal> = [];
  const seen = new Set<string>();
  for (const broker of brokers) {
    const image = broker.Config.Labels?.[labels.brokerImage];
    const network = broker.Config.Labels?.[labels.brokerNetwork] || null;
    // Labels alone name nothing: any container can carry them (one from a repository's tools image does).
    // A broker is para's by its name (this PARA_BROKER's, for its image and network) and its image.
    if (!broker.State.Running || !image || seen.has(image) || broker.Config.Labels?.[labels.temporary]) continue;
    if (broker.Name.replace(/^\//, '') !== brokerNames(network, image).container || !egress || broker.Image !== egress.Id) continue;
    seen.add(image);
    // Most logins are not para's to renew (a host's login, a setup-token, a key): one inspect tells.
    const info = await engine.inspectImage(image);
    if (!renewedByPara(info)) continue;
    if (!renewalDue(info) && !(await engine.inspectContainer(refreshContainerName(image)))) continue;
    const renewal = await renewLogin(engine, image, network, { log }).catch(
      (error: unknown): Renewal => ({ brokers: [], skipped: error instanceof Error ? error.message : String(error) }),
    );
    out.push({ image, ...renewal });
  }
  return out;
}

/**
 * start and resume: the broker for a session, its login renewed first when para renews it and it
 * is due (a failure is a warning: the current login still works until it expires).
 */
export async function freshBroker(engine: Engine, image: string, network: string | null, warn?: (message: string) => void): Promise<BrokerState> {
  const renewal = await renewLogin(engine, image, network).catch(
    (error: unknown): Renewal => ({ brokers: [], skipped: error instanceof Error ? error.message : String(error) }),
  );
  if (renewal.skipped) warn?.(renewal.skipped);
  return ensureBroker(engine, image, network);
}

/** What the refresh container reads besides its image: the host's extra CA and its proxy (address and login), in its /tmp (never its home, which becomes the image). */
async function copyRunFiles(engine: Engine, name: string, info: ImageInfo | undefined, network: string | null): Promise<void> {
  const [caText, upstream] = [await extraCaText(), brokerUpstream(network)];
  const files = [
    ...(caText ? [{ path: 'para-extra-ca.pem', content: caText, mode: 0o644 }] : []),
    ...(upstream
      ? [{ path: 'para-proxy', content: `http://${upstream.login ? `${proxyLogin(upstream.login)}@` : ''}${upstream.host}:${upstream.port}`, mode: 0o600 }]
      : []),
  ];
  const l = info?.Config.Labels ?? {};
  const owner = { uid: Number(l[labels.uid] ?? 0) || 0, gid: Number(l[labels.gid] ?? 0) || 0 };
  if (files.length) await engine.copyIn(name, '/tmp', tarArchive(files, owner));
}

/** user:password as a URL's user part. */
function proxyLogin(login: string): string {
  const at = login.indexOf(':');
  return at < 0 ? encodeURIComponent(login) : `${encodeURIComponent(login.slice(0, at))}:${encodeURIComponent(login.slice(at + 1))}`;
}
