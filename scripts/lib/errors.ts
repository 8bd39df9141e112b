// Errors that carry the next step for the user; scripts print them, library code throws them.

export class ParaError extends Error {
  /** The exact next step, e.g. "run: make image". */
  readonly hint?: string;
  /** Process exit code the top-level handler uses. */
  readonly exitCode: number;
  /** A short machine-readable identifier for --json output and tests. */
  readonly code: string;

  constructor(message: string, options: { hint?: string; code?: string; exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ParaError';
    this.hint = options.hint;
    this.code = options.code ?? 'error';
    this.exitCode = options.exitCode ?? 1;
  }
}

/** Bad command-line input: exit code 2. */
export class UsageError extends ParaError {
  constructor(message: string, hint?: string) {
    super(message, { hint, code: 'usage', exitCode: 2 });
    this.name = 'UsageError';
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
