// The doctor: every check in order, run concurrently; the report's outcome is "nothing failed".
import { createContext, type DoctorOptions } from './context.ts';
import { credentialChecks } from './credentials.ts';
import { imageChecks } from './image.ts';
import { runChecks, type CheckResult } from './runner.ts';
import { sessionChecks } from './sessions.ts';
import { systemChecks } from './system.ts';

export type { DoctorOptions } from './context.ts';
export type { CheckResult, CheckStatus } from './runner.ts';

export const checks = [...systemChecks, ...imageChecks, ...credentialChecks, ...sessionChecks];

export interface DoctorReport {
  ok: boolean;
  image: string;
  checks: CheckResult[];
}

export async function runDoctor(options: DoctorOptions & { verbose?: boolean } = {}): Promise<DoctorReport> {
  const context = createContext(options);
  // The login check's container is the slowest step: start it now so it overlaps the checks
  // it waits for. Its outcome, failure included, is read and reported by image-auth.
  context.authStatus().catch(() => undefined);
  const results = await runChecks(checks, context, { verbose: options.verbose });
  return { ok: results.every((result) => result.status !== 'fail'), image: context.image, checks: results };
}
