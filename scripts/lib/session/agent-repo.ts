// The shell run inside a session container to make the agent's own repository. It is the
// container's own start command (so no extra docker exec stands between `docker run` and a
// ready session): as root only to give the volume to the agent's user, then as that user. It
// marks /run/para/ready, or leaves the error in /run/para/seed-error; whatever needs the
// repository waits for one of the two (waitForRepositoryScript).
export const AGENT_VOLUME_DIR = '/para/session';
export const AGENT_GIT_DIR = `${AGENT_VOLUME_DIR}/repo.git`;
/** Where a remote session's files are: in its volume, since its engine cannot see the host folder. */
export const REMOTE_WORK_TREE = `${AGENT_VOLUME_DIR}/work`;
/** Root-owned folder in the container for para's own bookkeeping (readiness, the background job). */
export const RUN_DIR = '/run/para';

export interface SeedPlan {
  /** The object store the agent's repository borrows from (read-only); empty: the history comes as a bundle (a remote engine). */
  alternate: string;
  ref: string;
  commit: string;
  /** Check the files out into the folder (a new session), or only read the index (files are there). */
  checkout: boolean;
}

// Made once: whatever is at the repository's path later is the agent's (in any form, a dangling link
// too) and is never run. The files are written while the new repository is still para's own,
// before the agent can touch its configuration; git runs with no fsmonitor and no hooks.
const SEED = `set -eu
chown para: "$1"
exec setpriv --reuid=para --regid=para --init-groups -- sh -eu -c '
gitdir="$1"; alternate="$2"; ref="$3"; commit="$4"; checkout="$5"
if [ -e "$gitdir" ] || [ -L "$gitdir" ]; then exit 0; fi
rm -rf "$gitdir.new"
env -u GIT_DIR -u GIT_WORK_TREE git init -q --bare "$gitdir.new"
printf "%s\\n" "$alternate" > "$gitdir.new/objects/info/alternates"
g() { git -c core.fsmonitor=false -c core.hooksPath=/dev/null --git-dir="$gitdir.new" "$@"; }
g config core.bare false
g config core.worktree "$PARA_WORK_TREE"
g update-ref "$ref" "$commit"
g symbolic-ref HEAD "$ref"
if [ "$checkout" = 1 ]; then g --work-tree="$PARA_WORK_TREE" reset -q --hard; else g read-tree HEAD; fi
mv "$gitdir.new" "$gitdir"
' para-seed "$2" "$3" "$4" "$5" "$6"`;

// git as in a checkout: a gitfile in the folder's parent (the volume's top folder for a remote
// session; for a local one the container's own folder around the bind mount, never a host path)
// points at the agent's repository, whose core.worktree is the folder. Written as the agent, so a
// link the agent left there leads only where it could write anyway.
const GITFILE = `if [ -n "\${PARA_WORK_TREE:-}" ]; then
  p="\${PARA_WORK_TREE%/*}"
  [ "$p" = "$1" ] || chown -h para: "$p"
  setpriv --reuid=para --regid=para --init-groups -- sh -c 'printf "gitdir: %s\\n" "$1" > "$2/.git.para-tmp" && mv -fT "$2/.git.para-tmp" "$2/.git"' para-gitfile "$2" "$p" || true
fi`;

/** What Claude Code's hooks run in a session (root's file; the agent can run it, not change it). */
export const AGENT_HOOK = `${RUN_DIR}/agent-hook`;
/** Where the hook leaves the agent's last event, in the agent's own home (so: the agent's word). */
export const AGENT_STATE_FILE = '.claude/para-state';

// Run by claude as the agent on each hook event: records the event, the time and (Notification)
// its type; nothing else of what claude sends is kept.
const HOOK_SCRIPT = `e="$1"; t=""
if [ "$e" = Notification ]; then t=$(head -c 65536 | grep -o '"notification_type" *: *"[a-z_]*"' | head -n 1 | sed 's/.*"\\([a-z_]*\\)"$/\\1/')
else head -c 65536 > /dev/null; fi
f="$HOME/${AGENT_STATE_FILE}"; mkdir -p "\${f%/*}"
printf '%s %s %s\\n' "$e" "$(date +%s)" "$t" > "$f.$$" && mv -f "$f.$$" "$f"
exit 0`;

// The agent's side of a status line, computed as the agent (its repository, its files: its word,
// bounded in time and size): a digest of its refs, its session branch, whether files changed,
// and the last hook event. It takes no lock: a status that refreshed the index would hold
// index.lock and make the agent's own git add or commit fail at that moment.
const AGENT_REPORT = `gd="$1"; ref="$2"
g() { timeout 20 git --no-optional-locks -c core.fsmonitor=false -c core.hooksPath=/dev/null --git-dir="$gd" "$@"; }
[ -e "$gd" ] || exit 0
refs=$(g for-each-ref --format='%(objectname) %(refname)' 2>/dev/null | sha1sum | cut -c1-16)
head=$(g rev-parse -q --verify "$ref^{commit}" 2>/dev/null) || head=-
if out=$(g --work-tree="$PARA_WORK_TREE" status --porcelain 2>/dev/null); then if [ -n "$out" ]; then dirty=1; else dirty=0; fi; else dirty=-; fi
agent=$(timeout 2 head -c 200 "$HOME/${AGENT_STATE_FILE}" 2>/dev/null | head -n 1 | tr ' ' ':')
printf 'refs=%s head=%s dirty=%s agent=%s' "$refs" "$head" "$dirty" "\${agent:--}"`;

/**
 * The container's last job: one line in the container's own output (docker logs), written by root
 * only (no agent process holds that stream). Each line says, in para's part, the job's state from
 * root's files, and after " |" the agent's report, filtered to a few characters. A line is
 * written when something changed; list and watch read the last one instead of running a command
 * in every container. The hook and report scripts come as the entry's arguments 7 and 8.
 */
export const STATUS_MARK = 'para-status 1';
const STATUS_REPORTER = `printf '%s\\n' "$7" > "$d/agent-hook.tmp"; chmod 0755 "$d/agent-hook.tmp"; mv -f "$d/agent-hook.tmp" "${AGENT_HOOK}"
printf '%s\\n' "$8" > "$d/agent-report"; chmod 0644 "$d/agent-report"
home=$(getent passwd para | cut -d: -f6)
prev=""; lastjob=""; n=5; agent=""; pending=""; rm -f "$d/report.busy" "$d/report.out"
# Idle costs one sleep per round: the report (git) runs only when a file it reads is newer than the
# last report, when the job's state changes, and every 10 s (files changed by other means, an editor on the host).
# The agent's report runs beside the loop and is waited for 2 s at most: an agent that stops or
# hangs it (root here may not signal the agent's processes) only leaves its own part unchanged.
while :; do
  id=""; [ -f "$d/job.id" ] && read -r id < "$d/job.id"
  case "$id" in *[!0-9a-f]*) id=bad ;; esac
  job=none
  if [ -f "$d/job.pid" ] && [ ! -f "$d/exit-code" ]; then read -r pid < "$d/job.pid"; if kill -0 "$pid" 2>/dev/null; then job="running:$id"; else job="gone:$id"; fi; fi
  # The runner writes its exit code, then ends: read after the pid's check, a runner that just ended is not taken for gone.
  if [ -f "$d/exit-code" ]; then read -r code < "$d/exit-code"; case "$code" in ''|*[!0-9]*) code=255 ;; esac; job="exit:$code:$id"; fi
  n=$((n + 1)); changed=""
  if [ "$job" != "$lastjob" ] || [ "$n" -ge 5 ] || [ ! -e "$d/reported" ]; then changed=1; fi
  for f in "$2/index" "$2/HEAD" "$2/packed-refs" "$2/logs/HEAD" "$2/refs/heads" "$home/${AGENT_STATE_FILE}"; do
    if [ "$f" -nt "$d/reported" ]; then changed=1; fi
  done
  lastjob="$job"
  if [ -n "$changed" ] && [ ! -e "$d/report.busy" ]; then
    : > "$d/reported"; n=0; : > "$d/report.busy"
    ( setpriv --reuid=para --regid=para --init-groups -- timeout 30 sh "$d/agent-report" "$2" "$4" > "$d/report.tmp" 2>/dev/null < /dev/null
      mv -f "$d/report.tmp" "$d/report.out"; rm -f "$d/report.busy" ) &
    pending=1; w=0; while [ -e "$d/report.busy" ] && [ "$w" -lt 20 ]; do sleep 0.1; w=$((w + 1)); done
  fi
  if [ -n "$pending" ] && [ ! -e "$d/report.busy" ]; then pending=""; agent=$(head -c 400 "$d/report.out" 2>/dev/null | tr -cd 'A-Za-z0-9=:_. -'); fi
  line="${STATUS_MARK} job=$job | $agent"
  if [ "$line" != "$prev" ]; then printf '%s\\n' "$line"; prev="$line"; fi
  sleep 2
done`;

const ENTRY = `d="${RUN_DIR}"
mkdir -p "$d"; chmod 0755 "$d"; rm -f "$d/ready" "$d/seed-error"
# The gitfile before the repository is marked ready: whatever waits for ready finds it.
chown para: "$1"
${GITFILE}
if [ -z "$3" ]; then
  # A remote engine: the history arrives as a bundle (seedFromBundle); a kept volume is ready as it
  # is. Root touches nothing inside the volume: what is there is the agent's (a link, say).
  chown para: "$1"; if [ -e "$2" ] || [ -L "$2" ]; then : > "$d/ready"; fi
elif out=$( (${SEED}) 2>&1 ); then : > "$d/ready"; else printf '%s\\n' "$out" > "$d/seed-error"; fi
${STATUS_REPORTER}`;

/** A remote engine's copy of the repository's history, shared by its sessions there (root's; read-only to agents). */
export const MIRROR_DIR = '/para/mirror';

/**
 * Run as root in the session container (its mirror mounted read-only): gives the volume's top
 * folder to the agent's user, then, as that user only, makes the agent's repository borrowing the
 * mirror's objects, with the work tree in the volume. Root touches nothing inside the volume.
 */
export const SEED_FROM_MIRROR = `set -eu
d="${RUN_DIR}"; v="$1"; ref="$2"; work="$3"; commit="$4"; m="${MIRROR_DIR}"
if [ -e "$v/repo.git" ] || [ -L "$v/repo.git" ]; then : > "$d/ready"; exit 0; fi
chown para: "$v"
if ! out=$(setpriv --reuid=para --regid=para --init-groups -- sh -eu -c '
v="$1"; ref="$2"; work="$3"; commit="$4"; m="$5"; gitdir="$v/repo.git"
mkdir -p "$work"
rm -rf "$gitdir.new"
env -u GIT_DIR -u GIT_WORK_TREE git init -q --bare "$gitdir.new"
printf "%s\\n" "$m/objects" > "$gitdir.new/objects/info/alternates"
g() { git -c core.fsmonitor=false -c core.hooksPath=/dev/null --git-dir="$gitdir.new" "$@"; }
g update-ref "$ref" "$commit"
g config core.bare false
g config core.worktree "$work"
g symbolic-ref HEAD "$ref"
g --work-tree="$work" reset -q --hard
mv "$gitdir.new" "$gitdir"
' para-seed "$v" "$ref" "$work" "$commit" "$m" 2>&1); then printf '%s\\n' "$out" | tee "$d/seed-error" >&2; exit 3; fi
: > "$d/ready"`;

/**
 * Run as root in a short-lived container that mounts only the mirror (no agent's volume, no agent
 * process), with a bundle of the host's new history on standard input: adds it to the mirror. A
 * mirror whose folders are not root's is refused rather than trusted.
 */
export const UPDATE_MIRROR = `set -eu
m="${MIRROR_DIR}"; ref="$1"; commit="$2"; b="$(mktemp)"; cat > "$b"
[ -e "$m/HEAD" ] || env -u GIT_DIR -u GIT_WORK_TREE git init -q --bare "$m"
for f in "$m" "$m/config" "$m/objects" "$m/refs"; do
  if [ -L "$f" ] || [ "$(stat -c %u "$f")" != 0 ]; then echo "the mirror's $f is not root's: refused" >&2; exit 4; fi
done
git -c core.fsmonitor=false -c core.hooksPath=/dev/null --git-dir="$m" fetch -q "$b" "+$ref:refs/mirror/$commit"
chmod -R go-w "$m"; rm -f "$b"`;

/** The mirror's tips (what a new bundle may assume), one commit per line. */
export const MIRROR_TIPS = `m="${MIRROR_DIR}"; [ -e "$m/HEAD" ] || exit 0; git -c core.fsmonitor=false --git-dir="$m" for-each-ref --format='%(objectname)' refs/mirror`;

/** The container's command: make the agent's repository (once; a restart keeps it), then wait. */
export function entryCommand(plan: SeedPlan): string[] {
  return [
    'sh',
    '-c',
    ENTRY,
    'para-entry',
    AGENT_VOLUME_DIR,
    AGENT_GIT_DIR,
    plan.alternate,
    plan.ref,
    plan.commit,
    plan.checkout ? '1' : '0',
    HOOK_SCRIPT,
    AGENT_REPORT,
  ];
}

/**
 * Shell that waits (60 s at most) until the agent's repository is ready; on a seed error it
 * prints the error on stderr and exits 3, on time-out 4. Prepended to scripts that need it.
 */
export const WAIT_FOR_REPOSITORY = `i=0
while [ ! -e "${RUN_DIR}/ready" ]; do
  if [ -e "${RUN_DIR}/seed-error" ]; then echo "the agent's repository could not be made:" >&2; cat "${RUN_DIR}/seed-error" >&2; exit 3; fi
  i=$((i + 1)); if [ "$i" -gt 1200 ]; then echo "the agent's repository was not ready after 60 s" >&2; exit 4; fi
  sleep 0.05
done`;
