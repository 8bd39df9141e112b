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
exec sleep infinity`;

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
  return ['sh', '-c', ENTRY, 'para-entry', AGENT_VOLUME_DIR, AGENT_GIT_DIR, plan.alternate, plan.ref, plan.commit, plan.checkout ? '1' : '0'];
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
