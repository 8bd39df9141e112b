// The doctor's table for people; --json output is the report object itself.
import { forTerminal } from '../cli.ts';
import type { DoctorReport } from './index.ts';
import type { CheckStatus } from './runner.ts';

const COLOURS: Record<CheckStatus, string> = { ok: '32', warn: '33', fail: '31', skip: '2' };

export function useColour(stream: NodeJS.WriteStream = process.stdout, env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(stream.isTTY) && !env.CI && env.NO_COLOR === undefined && env.TERM !== 'dumb';
}

export function formatReport(report: DoctorReport, colour = false): string {
  const paint = (status: CheckStatus, text: string) => (colour ? `\u001b[${COLOURS[status]}m${text}\u001b[0m` : text);
  const idWidth = Math.max(...report.checks.map((check) => check.id.length));
  const lines: string[] = [];
  for (const check of report.checks) {
    const status = paint(check.status, check.status.padEnd(4));
    // A message may quote what a container printed (claude's words in the online check).
    lines.push(`${status}  ${check.id.padEnd(idWidth)}  ${forTerminal(check.message)}`);
    if (check.fix) lines.push(`${' '.repeat(4 + 2 + idWidth + 2)}fix: ${forTerminal(check.fix)}`);
  }
  const count = (status: CheckStatus) => report.checks.filter((check) => check.status === status).length;
  const failed = count('fail');
  const warned = count('warn');
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  lines.push('');
  lines.push(
    failed
      ? `${plural(failed, 'check')} failed${warned ? `, ${plural(warned, 'warning')}` : ''}: fix the first failure above and run make doctor again`
      : warned
        ? `no failures, ${plural(warned, 'warning')}: ${report.image} should work; see the fixes above`
        : `all checks passed: ${report.image} is ready`,
  );
  return `${lines.join('\n')}\n`;
}
