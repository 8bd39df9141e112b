// Runs doctor checks concurrently, each under its own deadline; a check whose prerequisite
// failed or was skipped is skipped with that reason instead of failing a second time.
import { ParaError, errorMessage } from '../errors.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** What a check concludes; `fix` is the exact next step, required for warn and fail. */
export interface Finding {
  status: CheckStatus;
  message: string;
  fix?: string;
}

export interface CheckResult {
  id: string;
  status: CheckStatus;
  message: string;
  fix: string | null;
  durationMs: number;
}

export interface Check<C> {
  id: string;
  /** Checks that must not have failed or been skipped; each must come earlier in the list. */
  needs?: string[];
  deadlineMs: number;
  /** The next step when the deadline passes. */
  timeoutFix?: string | ((context: C) => string);
  run: (context: C) => Promise<Finding>;
}

export const ok = (message: string): Finding => ({ status: 'ok', message });
export const warn = (message: string, fix: string): Finding => ({ status: 'warn', message, fix });
export const fail = (message: string, fix: string): Finding => ({ status: 'fail', message, fix });
export const skip = (message: string): Finding => ({ status: 'skip', message });

/** An error thrown by a check becomes a failure carrying its hint; nothing escapes. */
function findingFromError(error: unknown): Finding {
  if (error instanceof ParaError) return fail(error.message, error.hint ?? 'run again with --verbose for details');
  return fail(`internal error: ${errorMessage(error)}`, 'run again with --verbose and report the output');
}

function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(onTimeout()), ms);
  });
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

function seconds(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 100) / 10} s`;
}

export function validateChecks<C>(checks: Check<C>[]): void {
  const seen = new Set<string>();
  for (const check of checks) {
    if (seen.has(check.id)) throw new Error(`doctor: duplicate check id ${check.id}`);
    for (const need of check.needs ?? []) {
      if (!seen.has(need)) throw new Error(`doctor: check ${check.id} needs ${need}, which is not declared before it`);
    }
    seen.add(check.id);
  }
}

/** Results in declaration order; independent checks overlap in time. */
export async function runChecks<C>(checks: Check<C>[], context: C, options: { verbose?: boolean } = {}): Promise<CheckResult[]> {
  validateChecks(checks);
  // rootCause: the check whose failure (or skip) this skip ultimately comes from.
  const results = new Map<string, Promise<CheckResult & { rootCause?: CheckResult }>>();
  for (const check of checks) {
    results.set(
      check.id,
      (async () => {
        const prerequisites = await Promise.all((check.needs ?? []).map((id) => results.get(id)!));
        const blocker = prerequisites.find((result) => result.status === 'fail' || result.status === 'skip');
        if (blocker) {
          const root = blocker.rootCause ?? blocker;
          const why = root.status === 'fail' ? `${root.id} failed` : `${root.id} was skipped (${root.message})`;
          return { id: check.id, status: 'skip', message: `skipped: ${why}`, fix: null, durationMs: 0, rootCause: root };
        }
        const started = performance.now();
        const work = Promise.resolve()
          .then(() => check.run(context))
          .catch((error: unknown) => {
            if (options.verbose && error instanceof Error) process.stderr.write(`${check.id}: ${error.stack ?? error.message}\n`);
            return findingFromError(error);
          });
        const timeoutFix = typeof check.timeoutFix === 'function' ? check.timeoutFix(context) : check.timeoutFix;
        const finding = await withDeadline(work, check.deadlineMs, () =>
          fail(`did not finish within ${seconds(check.deadlineMs)}`, timeoutFix ?? 'check that the Docker daemon answers quickly: docker info'),
        );
        return {
          id: check.id,
          status: finding.status,
          message: finding.message,
          fix: finding.status === 'ok' || finding.status === 'skip' ? (finding.fix ?? null) : (finding.fix ?? 'no fix known'),
          durationMs: Math.round(performance.now() - started),
        };
      })(),
    );
  }
  const all = await Promise.all(checks.map((check) => results.get(check.id)!));
  return all.map(({ rootCause: _root, ...result }) => result);
}
