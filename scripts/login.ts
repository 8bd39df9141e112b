// make login: log in with `claude auth login` (the /login flow) inside a throwaway container and
// save that login as para-authenticated:latest, verified inside the image. Nothing comes from the host.
import { refreshBrokers } from './lib/broker/broker.ts';
import { assertSupportedPlatform, log, parseArgs, printJson, runMain, invocation, warn } from './lib/cli.ts';
import { config } from './lib/config.ts';
import { UsageError } from './lib/errors.ts';
import { sweepLeftovers } from './lib/image/sweep.ts';
import { ensureClaudeImage, imageUserIds } from './lib/image/build.ts';
import { assertTerminal, commitLogin, runInteractiveLogin, withLoginContainer } from './lib/image/login.ts';
import { shellEngine } from './lib/engine/engine.ts';

/** Images are built on the engine the shell names (DOCKER_CONTEXT, DOCKER_HOST, the current context). */
const engine = shellEngine;

const USAGE = `Usage: ${invocation('login')} [options]

Starts a throwaway container from ${config.claudeImage} (built first when missing; env
PARA_CLAUDE_IMAGE), runs \`claude auth login\` (the /login flow) in it on your terminal,
checks the login with \`claude auth status\`, and saves it as ${config.authenticatedImage},
verified again in a fresh container before the tag moves. The container is always
removed; a failed login leaves the previous image in place.

Needs a terminal: without one it exits with code 2 and creates nothing (use make image
TOKEN_FILE=<file> with a \`claude setup-token\` token instead).

Options:
  --tag IMAGE   image to produce (default: ${config.authenticatedImage})
  --json        print one JSON document on stdout at the end, no progress
  --verbose     show stack traces on errors
  -h, --help    show this help`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { string: ['tag'], boolean: ['json', 'verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (args._.length > 0) throw new UsageError(`unexpected argument ${String(args._[0])}`, 'see --help');
  assertSupportedPlatform();
  assertTerminal();

  const json = Boolean(args.json);
  const progress = (line: string) => {
    if (!json) log(line);
  };
  const tag = args.tag || config.authenticatedImage;
  const claudeImage = config.claudeImage;
  // What a killed earlier run left (a staging folder, a container or tag with credentials) goes first.
  for (const item of await sweepLeftovers(engine)) log(`removed the leftover of an interrupted run: ${item}`);
  await ensureClaudeImage(
    engine,
    {
      claudeImage,
      baseImage: config.baseImage,
      baseImageExplicit: Boolean(process.env.BASE_IMAGE),
      rebuild: false,
      ids: imageUserIds(),
      stream: !json,
    },
    progress,
  );

  const result = await withLoginContainer(engine, claudeImage, {}, async (container) => {
    log('logging in inside a throwaway container: open the link claude shows, sign in, paste the code back');
    await runInteractiveLogin(engine, container);
    progress('checking the login inside the container');
    return commitLogin(engine, container, { tag, claudeImage, log: progress });
  });

  // Running sessions use the new login from their next request: the brokers serving this image take it now.
  const brokers = await refreshBrokers(engine, result.tag).catch((error: unknown) => {
    warn(`the credential broker could not take the new login: ${error instanceof Error ? error.message : String(error)}; the next start brings it`);
    return [] as string[];
  });
  if (brokers.length && !json)
    log(`the credential broker${brokers.length === 1 ? '' : 's'} ${brokers.join(', ')} now serve${brokers.length === 1 ? 's' : ''} the new login`);
  if (json) {
    printJson({
      ok: true,
      image: result.tag,
      imageId: result.imageId,
      authMethod: result.status.authMethod,
      subscriptionType: result.status.subscriptionType ?? result.facts.subscriptionType ?? null,
      credentialsSource: 'login',
      expiresAt: result.facts.expiresAt === undefined ? null : new Date(result.facts.expiresAt).toISOString(),
    });
  } else {
    log(`${result.tag} is ready: claude reports loggedIn=true (${result.status.authMethod}) inside it`);
  }
  return 0;
}

await runMain(main);
