/**
 * Guest-side shell for workspaces, as pure functions of their inputs. Every
 * value is quoted with shellQuote; scripts use real newlines, never `\n`.
 *
 * A prepare never writes into the live guest path: the tar goes into a stage
 * dir next to it (StageCommand), which is swapped into place (ActivateScript)
 * keeping the previous tree aside, and that old tree is dropped only once
 * everything (hooks included) succeeded (FinalizeScript). RollbackScript puts
 * the old tree back from any point of that sequence.
 */
import { BangerError } from "../core/errors.ts";
import { shellQuote } from "../sessions/quote.ts";

/** Where a workspace lands in the guest unless told otherwise. */
export const DEFAULT_GUEST_PATH = "/root/repo";

/** Exit status of a guest script that found no git on PATH. */
export const NO_GIT_EXIT = 127;
/** Exit status of the diff/export scripts when the guest path holds no git repository. */
export const NOT_A_REPO_EXIT = 3;
/** Exit status of the stage command when the guest path holds something that is not an earlier workspace. */
export const NOT_A_WORKSPACE_EXIT = 4;
/** Exit status of the export script when the guest has nothing the host lacks. */
export const NOTHING_NEW_EXIT = 5;

/** Exit status of the stage and extract commands when tar failed on a guest filesystem with no free blocks or inodes left. */
export const DISK_FULL_EXIT = 6;

/** Exit status of the delta stage command when the guest tree is not the one the host's manifest describes: send everything. */
export const STALE_EXIT = 10;
/** File in the guest's .git holding the token of the prepare that made the tree (written last, so its mtime dates the tree). */
export const SENT_FILE = "BANGER_SENT";

/** File in the guest's .git naming the commit the workspace was prepared from (empty: unborn HEAD); also marks a banger workspace. */
export const BASE_FILE = "BANGER_BASE";

/** Directories a workspace may live under (strictly below): never /, /etc, /usr and friends. */
export const ALLOWED_GUEST_ROOTS = ["/root", "/home", "/srv", "/opt", "/mnt", "/tmp", "/var/tmp", "/work", "/workspace", "/workspaces"];

/**
 * A guest path we are willing to stage, swap, chmod -R and export: absolute,
 * no NUL, no `..`, strictly below one of ALLOWED_GUEST_ROOTS and not inside a
 * `.ssh` dir. Returns it without trailing slashes or `.` components.
 */
export function checkGuestPath(p: string): string {
  if (typeof p !== "string" || p.length === 0) throw new BangerError("E_BAD_REQUEST", "guest path must not be empty");
  if (p.includes("\0")) throw new BangerError("E_BAD_REQUEST", "guest path must not contain NUL");
  if (!p.startsWith("/")) throw new BangerError("E_BAD_REQUEST", `guest path must be absolute, got ${JSON.stringify(p)}`);
  const parts = p.split("/").filter((c) => c !== "" && c !== ".");
  if (parts.length === 0) throw new BangerError("E_BAD_REQUEST", `guest path must not be the root directory, got ${JSON.stringify(p)}`);
  if (parts.includes("..")) throw new BangerError("E_BAD_REQUEST", `guest path must not contain "..", got ${JSON.stringify(p)}`);
  const clean = "/" + parts.join("/");
  const under = ALLOWED_GUEST_ROOTS.some((r) => clean.startsWith(r + "/"));
  if (!under || parts.includes(".ssh")) {
    throw new BangerError("E_BAD_REQUEST", `guest path ${JSON.stringify(p)} is outside the allowed roots: use a directory below ${ALLOWED_GUEST_ROOTS.join(", ")}`);
  }
  return clean;
}

/** Stage and backup dirs for one prepare: siblings of the guest path, so the swap is a rename on one filesystem. */
export function stagePaths(guestPath: string, token: string): { stage: string; old: string } {
  const parent = guestPath.slice(0, guestPath.lastIndexOf("/")) || "/";
  return { stage: `${parent}/.banger-stage.${token}`, old: `${parent}/.banger-old.${token}` };
}

const GIT_CHECK = `command -v git >/dev/null 2>&1 || { echo "git is not installed in the guest" >&2; exit ${NO_GIT_EXIT}; }`;

/**
 * One command (bash -c) reading a tar stream on stdin into a new stage dir.
 * Refuses a guest path that exists and is neither empty nor an earlier
 * workspace, so a prepare never replaces someone's directory. `-i` because
 * the stream is two archives back to back (the files, then .git/config and
 * the base marker).
 */
export function StageCommand(guestPath: string, stage: string): string {
  const script = [
    `DIR=${shellQuote(guestPath)}`,
    `STAGE=${shellQuote(stage)}`,
    `if [ -e "$DIR" ] || [ -L "$DIR" ]; then`,
    `  if [ ! -d "$DIR" ] || [ -L "$DIR" ]; then echo "$DIR exists and is not a directory" >&2; exit ${NOT_A_WORKSPACE_EXIT}; fi`,
    `  if [ ! -e "$DIR/.git/${BASE_FILE}" ] && [ -n "$(ls -A -- "$DIR")" ]; then echo "$DIR exists and is not a banger workspace: remove it or pick another --guest-path" >&2; exit ${NOT_A_WORKSPACE_EXIT}; fi`,
    "fi",
    `mkdir -p -- "$(dirname -- "$STAGE")" && mkdir -- "$STAGE" || exit 1`,
    ..._extractIntoStage(),
  ].join("\n");
  return `bash -c ${shellQuote(script)}`;
}

/**
 * tar into $STAGE; when it fails, exit DISK_FULL_EXIT if the stage's
 * filesystem is out of blocks (under 256 KiB available) or inodes. Checked
 * before the stage is removed, so the fs is still as full as tar found it;
 * tar's own message cannot be relied on: a short write is reported as "Wrote
 * only 512 of 10240 bytes", without the errno. The parent is asked, as the
 * stage may be what could not be created; filesystems without an inode count
 * (btrfs reports 0 total) never count as out of inodes.
 */
function _extractIntoStage(): string[] {
  return [
    `tar -x -i --no-same-owner -f - -C "$STAGE" && exit 0`,
    "RC=$?",
    `P=$(dirname -- "$STAGE")`,
    `if df -Pk -- "$P" 2>/dev/null | awk 'NR == 2 && $4 < 256 { f = 1 } END { exit !f }' || df -Pi -- "$P" 2>/dev/null | awk 'NR == 2 && $2 > 0 && $4 == 0 { f = 1 } END { exit !f }'; then exit ${DISK_FULL_EXIT}; fi`,
    `exit "$RC"`,
  ];
}

/**
 * First step of a re-prepare that sends only what changed: check the guest
 * tree is the one the manifest describes (same token, nothing in it newer
 * than the token file), hard-link it into a new stage (cheap; unchanged files
 * share inodes), and remove from the stage the NUL-separated paths on stdin
 * (changed ones too, so the tar writes new inodes instead of writing through
 * links into the live tree). Exits STALE_EXIT when the tree cannot be reused.
 */
export function DeltaStageCommand(guestPath: string, stage: string, token: string): string {
  const script = [
    `DIR=${shellQuote(guestPath)}`,
    `STAGE=${shellQuote(stage)}`,
    `TOKEN=${shellQuote(token)}`,
    `M="$DIR/.git/${SENT_FILE}"`,
    `[ -d "$DIR" ] && [ ! -L "$DIR" ] && [ "$(cat -- "$M" 2>/dev/null)" = "$TOKEN" ] || exit ${STALE_EXIT}`,
    `[ -z "$(find "$DIR" -newer "$M" -print -quit 2>/dev/null)" ] || exit ${STALE_EXIT}`,
    // a read-only bind mount would make the links cross mounts (EXDEV)
    `if mountpoint -q -- "$DIR" 2>/dev/null; then umount -- "$DIR" || exit ${STALE_EXIT}; fi`,
    `cp -al -- "$DIR" "$STAGE" 2>/dev/null || exit ${STALE_EXIT}`,
    `cd -- "$STAGE" && rm -f -- ".git/${SENT_FILE}" && xargs -0 -r rm -rf --`,
  ].join("\n");
  return `bash -c ${shellQuote(script)}`;
}

/** Read a tar stream on stdin into an existing stage dir (the delta after DeltaStageCommand). */
export function ExtractIntoStageCommand(stage: string): string {
  return `bash -c ${shellQuote([`STAGE=${shellQuote(stage)}`, ..._extractIntoStage()].join("\n"))}`;
}

/** Swap the stage into place (the old tree moves aside), then mark the path safe for git: it is owned by another uid than a guest user may run git as. */
export function ActivateScript(guestPath: string, stage: string, old: string): string {
  return [
    "set -e",
    `DIR=${shellQuote(guestPath)}`,
    `STAGE=${shellQuote(stage)}`,
    `OLD=${shellQuote(old)}`,
    GIT_CHECK,
    // an earlier read-only prepare left a read-only bind mount on DIR: a mount point cannot be renamed
    `if mountpoint -q -- "$DIR" 2>/dev/null; then umount -- "$DIR"; fi`,
    `if [ -e "$DIR" ]; then mv -T -- "$DIR" "$OLD"; fi`,
    `mv -T -- "$STAGE" "$DIR"`,
    // --add appends: skip when present so repeated prepares don't grow ~/.gitconfig.
    `if ! git config --global --get-all safe.directory 2>/dev/null | grep -qxF -- "$DIR"; then`,
    `  git config --global --add safe.directory "$DIR"`,
    "fi",
  ].join("\n") + "\n";
}

/**
 * After hooks succeeded: drop the old tree; freeze the new one when read-only
 * (only now, so hooks could still write). chmod alone does not stop root, who
 * is the usual guest user, so root also gets a read-only bind mount over it.
 */
export function FinalizeScript(guestPath: string, old: string, readOnly: boolean, token: string): string {
  const lines = [
    "set -e",
    `DIR=${shellQuote(guestPath)}`,
    `OLD=${shellQuote(old)}`,
    `test -d "$DIR"`,
    // directories only: a re-prepare's files share inodes with the new tree (hard links)
    `if [ -e "$OLD" ]; then find "$OLD" -type d -exec chmod u+w {} +; rm -rf -- "$OLD"; fi`,
    // touched after it is written, so the .git dir it lands in is never newer than it
    `echo ${shellQuote(token)} > "$DIR/.git/${SENT_FILE}"`,
    `touch -- "$DIR/.git/${SENT_FILE}"`,
  ];
  if (readOnly) {
    lines.push(
      `chmod -R a-w "$DIR"`,
      `if [ "$(id -u)" = 0 ]; then`,
      `  mount --bind -- "$DIR" "$DIR" && mount -o remount,bind,ro -- "$DIR" || { umount -- "$DIR" 2>/dev/null; echo "could not make $DIR a read-only mount" >&2; exit 1; }`,
      "fi",
    );
  }
  return lines.join("\n") + "\n";
}

/**
 * Undo a prepare. Before activation only the stage (if any) goes. Once
 * activation started: if the stage is gone it was moved onto DIR, so DIR is
 * ours to remove; if the old tree was moved aside, it goes back; a stage still
 * present is removed last.
 */
export function RollbackScript(guestPath: string, stage: string, old: string, activated: boolean): string {
  const lines = [
    `DIR=${shellQuote(guestPath)}`,
    `STAGE=${shellQuote(stage)}`,
    `OLD=${shellQuote(old)}`,
    `_rm() { if [ -e "$1" ] || [ -L "$1" ]; then if mountpoint -q -- "$1" 2>/dev/null; then umount -- "$1"; fi; find "$1" -type d -exec chmod u+w {} + 2>/dev/null; rm -rf -- "$1"; fi; }`,
  ];
  if (activated) {
    lines.push(`if [ -e "$OLD" ]; then _rm "$DIR"; mv -T -- "$OLD" "$DIR"`, `elif [ ! -e "$STAGE" ]; then _rm "$DIR"; fi`);
  }
  lines.push(`_rm "$STAGE"`, `[ ! -e "$STAGE" ]`);
  return lines.join("\n") + "\n";
}

/** Shared head of the diff and export scripts: cd into the repo, a throwaway index and object dir (the repo's objects as an alternate) so the guest repo is never written — read-only workspaces included. */
function _scratchRepo(guestPath: string): string[] {
  return [
    "set -e",
    `DIR=${shellQuote(guestPath)}`,
    GIT_CHECK,
    `cd "$DIR" 2>/dev/null || { echo "no workspace at $DIR" >&2; exit ${NOT_A_REPO_EXIT}; }`,
    `GITDIR=$(git rev-parse --absolute-git-dir 2>/dev/null) || { echo "$DIR is not a git repository" >&2; exit ${NOT_A_REPO_EXIT}; }`,
    `TMP=$(mktemp -d)`,
    `trap 'rm -rf "$TMP"' EXIT`,
    `mkdir "$TMP/objects"`,
    `export GIT_INDEX_FILE="$TMP/index" GIT_OBJECT_DIRECTORY="$TMP/objects" GIT_ALTERNATE_OBJECT_DIRECTORIES="$GITDIR/objects"`,
    // An unborn HEAD leaves the index empty: the diff is then against the empty tree.
    `HEADC=$(git rev-parse --verify -q HEAD || true)`,
    `if [ -n "$HEADC" ]; then git read-tree HEAD; fi`,
    `git add -A .`,
  ];
}

/**
 * Print `git diff --binary` of everything in the guest repo that differs from
 * its HEAD, untracked (not ignored) files included.
 */
export function DiffScript(guestPath: string): string {
  return [..._scratchRepo(guestPath), `git -c core.quotepath=false diff --cached --binary --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/`].join("\n") + "\n";
}

/**
 * Everything the guest has that the prepared-from commit lacks — its new
 * commits, plus uncommitted work (untracked files included) as one more
 * commit made from the throwaway index; the guest's HEAD, index and refs
 * never move. `patch`: `git format-patch --binary` of base..tip on stdout
 * (`git am` takes it). `bundle`: a git bundle of the guest's branch
 * (refs/heads/NAME, or refs/heads/HEAD when detached) with base as its
 * prerequisite, on stdout. Exits NOTHING_NEW_EXIT when tip is the base.
 */
export function ExportScript(guestPath: string, format: "patch" | "bundle"): string {
  const lines = [
    ..._scratchRepo(guestPath),
    `BASE=$(cat "$GITDIR/${BASE_FILE}" 2>/dev/null || true)`,
    `TREE=$(git write-tree)`,
    `TIP=$HEADC`,
    `if [ -z "$HEADC" ] || [ "$TREE" != "$(git rev-parse "HEAD^{tree}")" ]; then`,
    `  export GIT_AUTHOR_NAME="$(git config user.name || echo banger)" GIT_AUTHOR_EMAIL="$(git config user.email || echo banger@localhost)"`,
    `  export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"`,
    `  if [ -n "$HEADC" ]; then TIP=$(git commit-tree "$TREE" -p "$HEADC" -m "banger: uncommitted work in $DIR")`,
    `  else TIP=$(git commit-tree "$TREE" -m "banger: uncommitted work in $DIR"); fi`,
    "fi",
    `if [ -z "$TIP" ] || [ "$TIP" = "$BASE" ]; then echo "nothing new in $DIR since it was prepared" >&2; exit ${NOTHING_NEW_EXIT}; fi`,
  ];
  if (format === "patch") {
    lines.push(
      `if [ -n "$BASE" ]; then RANGE="$BASE..$TIP"; else RANGE="--root $TIP"; fi`,
      // RANGE is two words when there is no base: unquoted on purpose (values are hex ids).
      `git -c core.quotepath=false format-patch --stdout --binary --no-color --no-signature --no-ext-diff $RANGE`,
    );
  } else {
    lines.push(
      `BR=$(git symbolic-ref -q --short HEAD || echo HEAD)`,
      // A scratch bare repo holds the one ref the bundle needs; objects come from the env above.
      `git init -q --bare "$TMP/b"`,
      `git --git-dir="$TMP/b" update-ref "refs/heads/$BR" "$TIP"`,
      `if [ -n "$BASE" ]; then git --git-dir="$TMP/b" bundle create -q - "refs/heads/$BR" "^$BASE"`,
      `else git --git-dir="$TMP/b" bundle create -q - "refs/heads/$BR"; fi`,
    );
  }
  return lines.join("\n") + "\n";
}
