// List this repository's sessions with their live container state.
import { assertSupportedPlatform, invocation, parseArgs, printJson, runMain, warn } from './lib/cli.ts';
import { UsageError } from './lib/errors.ts';
import { findRepo } from './lib/git.ts';
import { overview, type SessionView } from './lib/session/list.ts';
import { age, table } from './lib/session/watch.ts';

const USAGE = `Usage: ${invocation('list')} [--json]

Every session of the repository containing the current folder: what its agent is doing (working,
waiting for you, idle, done, failed, unknown; from Claude Code's hooks or its job), status, container state
(running, exited, missing; with its runtime when not the engine's default, e.g. runsc), egress (allowlist, with its proxy's health; OPEN; none), branch, uncommitted changes, age, background job, limits. The
agent's commits are brought to para/NAME first. Containers and volumes labelled for this
repository that belong to no session are orphans (clean removes them); a session whose container
is gone is marked (start it again to re-create the container, or cancel it).`;

function row(s: SessionView): string[] {
  const changes = s.uncommittedChanges === null ? '-' : s.uncommittedChanges ? 'yes' : 'no';
  const job = !s.job
    ? ''
    : s.job.state === 'running'
      ? 'job running'
      : s.job.state === 'exited'
        ? `job exit ${s.job.exitCode}`
        : `job lost (${s.job.reason ?? ''})`;
  const note = [s.orphan ? 'container missing' : '', job, s.plantedGit ? 'planted .git!' : ''].filter(Boolean).join(', ');
  const egress = !s.egress
    ? '-'
    : s.egress.mode === 'open'
      ? 'OPEN (any address)'
      : s.egress.mode === 'allowlist' && s.egress.proxy && s.egress.proxy !== 'running'
        ? `allowlist (proxy ${s.egress.proxy})`
        : s.egress.mode === 'allowlist' && s.egress.refusedSinceLastLook
          ? `allowlist (${s.egress.refusedSinceLastLook} refused)`
          : s.egress.mode;
  const container = s.runtime && s.containerState !== 'none' ? `${s.containerState} (${s.runtime})` : s.containerState;
  const since = s.activity?.since ? Math.max(0, Math.round((Date.now() - Date.parse(s.activity.since)) / 1000)) : null;
  const state = s.activity ? `${s.activity.state}${since !== null && !Number.isNaN(since) ? ` ${age(since)}` : ''}` : '-';
  return [state, s.name, s.status, container, egress, s.branch, changes, age(s.ageSeconds), note];
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { boolean: ['json', 'verbose', 'help'], alias: { h: 'help' } });
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  assertSupportedPlatform();
  if (args._.length > 0) throw new UsageError(`unexpected argument ${String(args._[0])}`, 'see --help');
  const result = await overview(await findRepo(process.cwd()));
  if (args.json) {
    printJson({ ok: true, ...result });
    return 0;
  }
  for (const problem of result.problems) warn(problem.message);
  for (const session of result.sessions) for (const message of session.warnings) warn(`${session.name}: ${message}`);
  for (const broker of result.brokers)
    if (broker.tookHostLogin)
      process.stderr.write(
        `para: the credential broker ${broker.name} now serves the host's renewed login (it expires ${broker.loginExpiresAt ?? 'at an unknown time'})\n`,
      );
    else if (broker.renewalProblem && !(broker.loginExpiresAt && Date.parse(broker.loginExpiresAt) <= Date.now()))
      warn(
        `para could not renew the login the credential broker ${broker.name} serves (it works until ${broker.loginExpiresAt ?? 'it expires'}): ${broker.renewalProblem}`,
      );
    else if (broker.renewedLogin)
      process.stderr.write(
        `para: renewed the login the credential broker ${broker.name} serves (it now expires ${broker.loginExpiresAt ?? 'at an unknown time'})\n`,
      );
  if (result.sessions.length === 0 && result.orphanContainers.length === 0 && result.orphanVolumes.length === 0) {
    process.stdout.write('no sessions in this repository\n');
    return 0;
  }
  const rows = [['STATE', 'NAME', 'STATUS', 'CONTAINER', 'EGRESS', 'BRANCH', 'CHANGES', 'AGE', 'NOTE'], ...result.sessions.map(row)];
  process.stdout.write(`${table(rows).join('\n')}\n`);
  for (const orphan of result.orphanContainers) {
    process.stdout.write(
      `orphan container ${orphan.name} (${orphan.state}${orphan.session ? `, session label ${orphan.session}` : ''}): run ${invocation('clean')}\n`,
    );
  }
  for (const volume of result.orphanVolumes) process.stdout.write(`orphan volume ${volume}: run ${invocation('clean')}\n`);
  return 0;
}

await runMain(main);
