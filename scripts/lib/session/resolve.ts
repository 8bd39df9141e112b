// Finding the session a command names: the repository it is run in and the session's own state.
import { ParaError, UsageError } from '../errors.ts';
import { findRepo } from '../git.ts';
import { validateSessionName } from './paths.ts';
import type { Repo } from '../repo.ts';
import { readSession, type SessionState } from './store.ts';

export type Invocation = (verb: string) => string;

/** Finds the repository and the named session, or says what to do. */
export async function resolveSession(cwd: string, name: string, invocation: Invocation): Promise<{ repo: Repo; state: SessionState }> {
  const problem = validateSessionName(name);
  if (problem) throw new UsageError(problem);
  const repo = await findRepo(cwd);
  const state = await readSession(repo, name);
  if (!state) throw new ParaError(`there is no session ${name} in ${repo.root}`, { code: 'no-such-session', hint: `list the sessions: ${invocation('list')}` });
  return { repo, state };
}
