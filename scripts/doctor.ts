// make doctor: say exactly why a container cannot authenticate, and what to do about it.
import { parseArgs, printJson, runMain, invocation } from './lib/cli.ts';
import { config } from './lib/config.ts';
import { UsageError } from './lib/errors.ts';
import { runDoctor } from './lib/doctor/index.ts';
import { formatReport, useColour } from './lib/doctor/report.ts';

const USAGE = `Usage: ${invocation('doctor')} [options]

Checks the platform, Docker, git, the authenticated image, the login inside it, the
expiry of the baked credentials, the host login and this repository's sessions. Each
check prints ok, warn, fail or skip, a one-line message and the exact fix.

Options:
  --image IMAGE   the image to check (default: ${config.authenticatedImage}; env PARA_IMAGE)
  --online        also make one real request with the image's credentials, through an egress
                  proxy as a session's, and say: accepted, rejected, or unreachable
  --egress-network NET  the docker network that proxy reaches out through (default: docker's own)
  --json          print one JSON document { ok, image, checks: [{ id, status, message, fix }] }
  --verbose       print stack traces of checks that failed unexpectedly
  -h, --help      show this help

Exit status: 0 when no check fails (warnings allowed), 1 when one fails, 2 for bad usage.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    string: ['image', 'egress-network'],
    boolean: ['json', 'verbose', 'help', 'online'],
    alias: { h: 'help' },
  });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (args._.length > 0) throw new UsageError(`unexpected argument ${String(args._[0])}`, 'see --help');

  if (args['egress-network'] && !args.online) throw new UsageError('--egress-network is for --online', 'add --online');
  const report = await runDoctor({
    image: args.image || undefined,
    verbose: Boolean(args.verbose),
    online: Boolean(args.online),
    egressNetwork: args['egress-network'] || null,
  });
  if (args.json) printJson(report);
  else process.stdout.write(formatReport(report, useColour()));
  return report.ok ? 0 : 1;
}

await runMain(main);
