// Helpers for the doctor tests: run doctor.ts with --json, a fake docker CLI, a throwaway repository.
import { execa } from 'execa';
import fs from 'fs-extra';
import path from 'node:path';
import type { DoctorReport } from '../../scripts/lib/doctor/index.ts';
import type { CheckResult } from '../../scripts/lib/doctor/runner.ts';
import { runScript, type ScriptResult } from './images.ts';
import { tempDir } from './resources.ts';

export interface DoctorRun extends ScriptResult {
  report: DoctorReport;
  check: (id: string) => CheckResult;
}

/** doctor.ts --json; the JSON must parse and name every check. */
export async function runDoctorJson(args: string[], options: { env?: Record<string, string | undefined>; cwd?: string } = {}): Promise<DoctorRun> {
  const result = await runScript('doctor.ts', ['--json', ...args], options);
  let report: DoctorReport;
  try {
    report = JSON.parse(result.stdout) as DoctorReport;
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${result.exitCode}):\n${result.stdout}\n${result.stderr}`);
  }
  return {
    ...result,
    report,
    check: (id) => {
      const found = report.checks.find((check) => check.id === id);
      if (!found) throw new Error(`no check ${id} in ${JSON.stringify(report.checks.map((check) => check.id))}`);
      return found;
    },
  };
}

/** A folder with an executable `docker` that answers --version and fails every other call with `stderr`. */
export async function fakeDockerDir(stderr: string): Promise<string> {
  const dir = await tempDir('para-fake-docker-');
  const script = [
    '#!/bin/sh',
    'if [ "$1" = "--version" ]; then echo "Docker version 99.0.0, build fake"; exit 0; fi',
    `printf '%s\\n' '${stderr.replace(/'/g, `'\\''`)}' >&2`,
    'exit 1',
  ].join('\n');
  await fs.writeFile(path.join(dir, 'docker'), `${script}\n`, { mode: 0o755 });
  return dir;
}

/** An empty git repository in a temporary folder. */
export async function tempRepo(): Promise<string> {
  const dir = await tempDir('para-doctor-repo-');
  await execa('git', ['init', '--quiet', dir]);
  return dir;
}
