// What a session's egress proxy refused and admitted, per host, from its own log.
import { assertSupportedPlatform, forTerminal, invocation, parseArgs, printJson, runMain } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { egressReport } from './lib/session/steer.ts';

const USAGE = `Usage: ${invocation('egress')} NAME [--json]

Lists the hosts session NAME's agent asked its proxy for, refused and admitted, with counts, the
first and last time and para's reason for a refusal. Host names come from the agent: control
characters are shown escaped. Admit one with ${invocation('allow')} NAME HOST.`;

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['json', 'verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length !== 1) throw new UsageError('give exactly one session NAME', `${invocation('egress')} NAME`);
  const report = await egressReport(process.cwd(), String(args._[0]), invocation);
  if (args.json) {
    printJson({ ok: true, ...report });
    return 0;
  }
  if (report.mode !== 'allowlist') {
    process.stdout.write(`session ${report.name} has egress ${report.mode}: no proxy, nothing refused or admitted by one\n`);
    return 0;
  }
  const rows = report.hosts.map((h) => [
    h.verdict,
    String(h.count),
    h.last.slice(0, 19).replace('T', ' '),
    forTerminal(h.host),
    h.verdict === 'refused' ? h.reason.replace(/^refused:/, '') : '',
  ]);
  const header = ['VERDICT', 'COUNT', 'LAST (UTC)', 'HOST', 'WHY'];
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((r) => r[i].length)));
  for (const row of [header, ...rows]) process.stdout.write(`${row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')}\n`);
  if (!rows.length) process.stdout.write('(no request yet)\n');
  const refused = report.hosts.filter((h) => h.verdict === 'refused' && h.reason === 'refused:host-not-in-allowlist');
  if (refused.length) process.stdout.write(`\nadmit one: ${invocation('allow')} ${report.name} ${forTerminal(refused[0].host)}\n`);
  return 0;
}

await runMain(main);
