// Admit more hosts in a running session's egress allowlist: the proxy reloads, the session keeps running.
import { assertSupportedPlatform, forTerminal, invocation, log, parseArgs, printJson, runMain } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { allowHosts } from './lib/session/steer.ts';

const USAGE = `Usage: ${invocation('allow')} NAME HOST... [--json]

Admits HOST (a name, or *.domain for its subdomains) in the egress allowlist of session NAME,
as --allow does at start: recorded in the session (list shows it; a resume keeps it) and, while
the session runs, live: its proxy reloads its configuration, and the session, its job and its open
connections keep running. The same checks apply as for --allow. ${invocation('egress')} NAME shows
what the session asked for and was refused.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['json', 'verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  const [name, ...hosts] = args._.map(String);
  if (!name || hosts.length === 0) throw new UsageError('give a session NAME and at least one HOST', `${invocation('allow')} NAME HOST...`);
  const result = await allowHosts(process.cwd(), name, hosts, invocation);
  if (args.json) {
    printJson({ ok: true, ...result });
    return 0;
  }
  if (!result.added.length) log(`session ${name} already admits ${hosts.join(', ')}`);
  else if (result.reloaded) log(`session ${name} now admits ${result.added.join(', ')} (its proxy reloaded in ${result.reloadMs} ms)`);
  else log(`session ${name} will admit ${result.added.join(', ')} once it runs again (its proxy is not running)`);
  log(`allowlist: ${forTerminal(result.hosts.join(', '))}`);
  return 0;
}

await runMain(main);
