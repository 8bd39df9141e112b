// make image: bake the host's Claude login into para-authenticated:latest, verified inside the image.
import { refreshBrokers } from './lib/broker/broker.ts';
import { text } from 'node:stream/consumers';
import { assertSupportedPlatform, isInteractive, log, parseArgs, printJson, runMain, warn, invocation } from './lib/cli.ts';
import { config, labels } from './lib/config.ts';
import { discoverCredentials, type Credentials } from './lib/image/credentials.ts';
import { ParaError, UsageError } from './lib/errors.ts';
import { onlineCheck, type OnlineVerdict } from './lib/image/online-check.ts';
import { sweepLeftovers } from './lib/image/sweep.ts';
import { buildAuthenticatedImage, ensureClaudeImage, imageUserIds } from './lib/image/build.ts';
import { ensureEgressImage } from './lib/image/egress-image.ts';
import { shellEngine } from './lib/engine/engine.ts';

/** Images are built on the engine the shell names (DOCKER_CONTEXT, DOCKER_HOST, the current context). */
const engine = shellEngine;

const USAGE = `Usage: ${invocation('image')} [options]

Builds ${config.claudeImage} (claude CLI, git, non-root user) and ${config.egressImage} (the
sessions' egress proxy) when needed, then ${config.authenticatedImage} with your Claude
credentials, and verifies the login inside it.

Options:
  --tag IMAGE            image to produce (default: ${config.authenticatedImage})
  --base-image IMAGE     OS image for ${config.claudeImage} (default: ${config.baseImage}; env BASE_IMAGE)
  --claude-binary PATH   copy this Linux claude binary into the image (offline builds)
  --claude-version V     the claude CLI version from npm (default: latest; env CLAUDE_VERSION); without
                         --claude-binary, your own npm fetches the package for the engine's platform
  --token-file PATH      a \`claude setup-token\` token (- reads standard input)
  --api-key-file PATH    an Anthropic API key (- reads standard input)
  --rebuild-base         rebuild ${config.claudeImage} and ${config.egressImage} even if they exist
  --verify online        also make one real request with the new image's credentials, through an
                         egress proxy as a session's; the tag moves only if the API accepts them
  --egress-network NET   the docker network that proxy reaches out through (default: docker's own)
  --context NAME         build on that docker context's engine (the same as DOCKER_CONTEXT=NAME)
  --json                 print one JSON document on stdout, no progress
  --verbose              show stack traces on errors
  -h, --help             show this help

Credentials, first found wins: --token-file, --api-key-file, then the host login
($CLAUDE_CONFIG_DIR or ~/.claude/.credentials.json; on macOS the Keychain first).`;

export function warningsFor(credentials: Credentials, now = Date.now()): string[] {
  const warnings: string[] = [];
  if (credentials.shapeWarning) warnings.push(credentials.shapeWarning);
  if (credentials.expiresAt !== undefined && credentials.expiresAt <= now && !credentials.expiryEstimated) {
    warnings.push(
      `the baked access token expired at ${new Date(credentials.expiresAt).toISOString()}: run claude on the host once to renew it (the broker then follows it), or make image again after that`,
    );
  }
  if (credentials.kind === 'subscription') {
    warnings.push(
      "a subscription login was baked in: sessions reach it through the credential broker, which follows the host's claude when it renews the login (para start, list and watch bring the renewed one); a session started with --credentials image holds it, and its refresh can log the host out; a setup-token needs no refresh (claude setup-token, then make image TOKEN_FILE=<file>)",
    );
  }
  return warnings;
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    string: ['tag', 'base-image', 'claude-binary', 'claude-version', 'token-file', 'api-key-file', 'verify', 'egress-network', 'context'],
    boolean: ['rebuild-base', 'json', 'verbose', 'help'],
    alias: { h: 'help' },
  });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (args._.length > 0) throw new UsageError(`unexpected argument ${String(args._[0])}`, 'see --help');
  if (args['token-file'] && args['api-key-file']) throw new UsageError('give either --token-file or --api-key-file, not both');
  // Every docker call of this run goes to that engine.
  if (args.context) {
    process.env.DOCKER_CONTEXT = String(args.context);
    delete process.env.DOCKER_HOST;
  }
  const verify = args.verify || 'offline';
  if (verify !== 'offline' && verify !== 'online')
    throw new UsageError(`--verify ${JSON.stringify(verify)} is not offline or online`, 'use --verify online (VERIFY=online)');
  if (args['egress-network'] && verify !== 'online') throw new UsageError('--egress-network is for --verify online', 'add --verify online');
  assertSupportedPlatform();

  const json = Boolean(args.json);
  const progress = (line: string) => {
    if (!json) log(line);
  };
  const credentials = await discoverCredentials({
    tokenFile: args['token-file'] || undefined,
    apiKeyFile: args['api-key-file'] || undefined,
    readStdin: () => text(process.stdin),
  });
  progress(`credentials: ${credentials.kind} from ${credentials.source}`);

  const claudeImage = config.claudeImage;
  // What a killed earlier run left (a staging folder, a container or tag with credentials) goes first.
  for (const item of await sweepLeftovers(engine)) progress(`removed the leftover of an interrupted run: ${item}`);
  const rebuiltBase = await ensureClaudeImage(
    engine,
    {
      claudeImage,
      baseImage: args['base-image'] || config.baseImage,
      baseImageExplicit: Boolean(args['base-image'] || process.env.BASE_IMAGE),
      claudeBinary: args['claude-binary'] || undefined,
      claudeVersion: args['claude-version'] || process.env.CLAUDE_VERSION || undefined,
      rebuild: Boolean(args['rebuild-base']),
      ids: imageUserIds(),
      stream: !json,
    },
    progress,
  );

  // The proxy comes from the same base as para-claude (its label says which, when not given now).
  const baseExplicit = args['base-image'] || process.env.BASE_IMAGE;
  const egressBase = baseExplicit || (await engine.inspectImage(claudeImage))?.Config.Labels?.[labels.baseImage] || config.baseImage;
  const rebuiltEgress = await ensureEgressImage(
    engine,
    { image: config.egressImage, baseImage: egressBase, rebuild: Boolean(args['rebuild-base']), stream: !json },
    progress,
  );

  const tag = args.tag || config.authenticatedImage;
  progress(`building ${tag} and verifying the login inside it`);
  let online: OnlineVerdict | undefined;
  const build = await buildAuthenticatedImage(engine, {
    tag,
    claudeImage,
    credentials,
    stream: isInteractive(json),
    verify:
      verify === 'online'
        ? async (image) => {
            progress('asking the Anthropic API whether it accepts the login (one real request, the way sessions make it)');
            online = await onlineCheck(engine, image, { network: args['egress-network'] || null, warn, broker: 'own' });
            if (online.outcome !== 'accepted') {
              const what =
                online.outcome === 'rejected'
                  ? 'the Anthropic API rejected the login'
                  : online.outcome === 'unreachable'
                    ? 'the Anthropic API could not be reached'
                    : 'the online check could not tell';
              throw new ParaError(`${what} (${online.detail}); ${tag} was not changed`, {
                code: `online-${online.outcome}`,
                hint:
                  online.outcome === 'rejected'
                    ? 'log in again on the host (claude, then /login) or give a fresh TOKEN_FILE, then make image again'
                    : 'check the network (EGRESS_NETWORK) and HTTPS_PROXY, or build without VERIFY=online',
              });
            }
          }
        : undefined,
  });
  const warnings = warningsFor(credentials);
  for (const warning of warnings) warn(warning);

  // Running sessions use the new login from their next request: the brokers serving this image take it now.
  const brokers = await refreshBrokers(engine, build.tag).catch((error: unknown) => {
    warn(`the credential broker could not take the new login: ${error instanceof Error ? error.message : String(error)}; the next start brings it`);
    return [] as string[];
  });
  if (brokers.length && !json)
    log(`the credential broker${brokers.length === 1 ? '' : 's'} ${brokers.join(', ')} now serve${brokers.length === 1 ? 's' : ''} the new login`);
  if (json) {
    printJson({
      ok: true,
      image: build.tag,
      imageId: build.imageId,
      authMethod: build.status.authMethod,
      subscriptionType: build.status.subscriptionType ?? null,
      credentialsSource: credentials.kind,
      expiresAt: credentials.expiresAt === undefined ? null : new Date(credentials.expiresAt).toISOString(),
      rebuiltBase,
      egressImage: config.egressImage,
      rebuiltEgress,
      online: online?.outcome ?? null,
      warnings,
    });
  } else {
    log(`${build.tag} is ready: claude reports loggedIn=true (${build.status.authMethod}) inside it${online ? '; the Anthropic API accepted it' : ''}`);
  }
  return 0;
}

await runMain(main);
