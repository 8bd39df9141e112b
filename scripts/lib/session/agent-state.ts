// What a session is doing, from the last status line its container wrote (agent-repo.ts
// STATUS_REPORTER). The line has two parts: para's (the job's state, from root's files in the
// container) and the agent's (its refs, its branch, uncommitted files, its last hook event). The
// agent's part is its own word: it is only shown, after validation, and decides nothing but
// whether list brings commits back now (finish, sync, diff and merge always do).
import { STATUS_MARK } from './agent-repo.ts';

/** What a person wants to know first about a session. */
export type AgentState = 'working' | 'waiting' | 'idle' | 'done' | 'failed' | 'unknown';

/** The job's state in a status line, with the id of the job it is about (none: no job has started in this container). */
export type JobStatus =
  | { state: 'none' }
  | { state: 'running'; id: string }
  | { state: 'exited'; exitCode: number; id: string }
  | { state: 'gone'; id: string };

export interface AgentReport {
  /** A digest of all the agent's refs: changes whenever any of them moves. */
  refs: string | null;
  /** The session branch's commit in the agent's repository. */
  head: string | null;
  uncommitted: boolean | null;
  /** The last Claude Code hook event, as the agent's hook recorded it. */
  event: { name: string; at: number; detail: string } | null;
  /** The agent's part could not be read as para writes it (the agent changed it, or an old container). */
  garbled: boolean;
}

export interface StatusLine {
  job: JobStatus;
  agent: AgentReport;
}

const HOOK_STATE: Record<string, AgentState> = {
  SessionStart: 'idle',
  UserPromptSubmit: 'working',
  PreToolUse: 'working',
  PostToolUse: 'working',
  PostToolUseFailure: 'working',
  PermissionRequest: 'waiting',
  Elicitation: 'waiting',
  Stop: 'done',
  StopFailure: 'failed',
  SessionEnd: 'idle',
};

/** The state a hook event means; a Notification by its type (a permission or a question waits for you). */
export function stateOfEvent(name: string, detail: string): AgentState {
  if (name === 'Notification') {
    if (detail === 'idle_prompt') return 'done';
    if (detail === 'auth_success') return 'idle';
    return 'waiting';
  }
  return HOOK_STATE[name] ?? 'unknown';
}

function parseJob(text: string | undefined): JobStatus | null {
  if (text === 'none') return { state: 'none' };
  const parsed = /^(running|gone|exit:(\d{1,3})):([0-9a-f]{16})$/.exec(text ?? '');
  if (!parsed) return null;
  if (parsed[2] !== undefined) return { state: 'exited', exitCode: Number(parsed[2]), id: parsed[3] };
  return { state: parsed[1] as 'running' | 'gone', id: parsed[3] };
}

function parseAgent(text: string): AgentReport {
  const garbled: AgentReport = { refs: null, head: null, uncommitted: null, event: null, garbled: true };
  const fields = new Map<string, string>();
  for (const token of text.trim().split(' ').filter(Boolean)) {
    const at = token.indexOf('=');
    if (at < 1 || fields.has(token.slice(0, at))) return garbled;
    fields.set(token.slice(0, at), token.slice(at + 1));
  }
  if (fields.size === 0) return { ...garbled, garbled: false };
  const refs = fields.get('refs') ?? '';
  const head = fields.get('head') ?? '';
  const dirty = fields.get('dirty') ?? '';
  const agent = fields.get('agent') ?? '';
  if (fields.size !== 4 || !/^[0-9a-f]{16}$/.test(refs) || !/^([0-9a-f]{40}|[0-9a-f]{64}|-)$/.test(head) || !/^[01-]$/.test(dirty)) return garbled;
  let event: AgentReport['event'] = null;
  if (agent !== '-') {
    const parsed = /^([A-Za-z]{1,40}):(\d{1,12}):([a-z_]{0,40})$/.exec(agent);
    if (!parsed) return { refs, head: head === '-' ? null : head, uncommitted: dirty === '-' ? null : dirty === '1', event: null, garbled: true };
    event = { name: parsed[1], at: Number(parsed[2]), detail: parsed[3] };
  }
  return { refs, head: head === '-' ? null : head, uncommitted: dirty === '-' ? null : dirty === '1', event, garbled: false };
}

/** The last status line in a container's output; null when it has none (a container made before para reported). */
export function lastStatus(log: string): StatusLine | null {
  const lines = log.split('\n');
  for (let i = lines.length - 1; i >= 0; i -= 1) {
    const line = lines[i];
    if (!line.startsWith(`${STATUS_MARK} `)) continue;
    const [ours, ...rest] = line.slice(STATUS_MARK.length + 1).split(' | ');
    const job = parseJob(/^job=(\S+)$/.exec(ours)?.[1]);
    if (!job || rest.length > 1) continue;
    return { job, agent: parseAgent(rest[0] ?? '') };
  }
  return null;
}

export interface ActivityView {
  state: AgentState;
  /** Since when (ISO), when known. */
  since: string | null;
  /** The hook event it comes from (validated: letters only), or why it is known. */
  source: string;
}

/**
 * One state for a session: a finished job says done or failed; a running one, or an interactive
 * claude, says what its last hook event said (working when a job's claude has said nothing yet).
 */
export function activity(
  job: { state: 'running' | 'exited' | 'lost'; exitCode?: number | null; finishedAt?: string | null; startedAt?: string } | null,
  report: AgentReport | null,
  containerRunning: boolean,
): ActivityView {
  if (job?.state === 'exited') return { state: job.exitCode === 0 ? 'done' : 'failed', since: job.finishedAt ?? null, source: `job exit ${job.exitCode}` };
  if (job?.state === 'lost') return { state: 'failed', since: null, source: 'job lost' };
  if (!containerRunning) return { state: 'idle', since: null, source: 'container not running' };
  if (report?.garbled) return { state: 'unknown', since: null, source: 'unreadable report' };
  const event = report?.event;
  if (event) {
    const state = stateOfEvent(event.name, event.detail);
    // A job's claude that has ended its turn has not exited yet: still working until it does.
    const shown = job?.state === 'running' && (state === 'idle' || state === 'done') ? 'working' : state;
    return { state: shown, since: new Date(event.at * 1000).toISOString(), source: event.detail ? `${event.name}:${event.detail}` : event.name };
  }
  if (job?.state === 'running') return { state: 'working', since: job.startedAt ?? null, source: 'job running' };
  return { state: 'idle', since: null, source: 'no agent event yet' };
}
