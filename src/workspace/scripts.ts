/**
 * Guest-side shell for workspaces, as pure functions of their inputs. Every
 * value is quoted with shellQuote; scripts use real newlines, never `\n`.
 */
import { BangerError } from "../core/errors.ts";
import { shellQuote } from "../sessions/quote.ts";

/** Where a workspace lands in the guest unless told otherwise. */
export const DEFAULT_GUEST_PATH = "/root/repo";

/** Exit status of a guest script that found no git on PATH. */
export const NO_GIT_EXIT = 127;
/** Exit status of the diff script when the guest path holds no git repository. */
export const NOT_A_REPO_EXIT = 3;

/**
 * A guest path we are willing to extract into, chmod -R and diff: absolute,
 * no NUL, and never the root itself (chmod -R a-w / would wreck the guest).
 * Returns it without trailing slashes.
 */
export function checkGuestPath(p: string): string {
  if (typeof p !== "string" || p.length === 0) throw new BangerError("E_BAD_REQUEST", "guest path must not be empty");
  if (p.includes("\0")) throw new BangerError("E_BAD_REQUEST", "guest path must not contain NUL");
  if (!p.startsWith("/")) throw new BangerError("E_BAD_REQUEST", `guest path must be absolute, got ${JSON.stringify(p)}`);
  const trimmed = p.replace(/\/+$/, "");
  if (trimmed === "" || trimmed.split("/").every((c) => c === "" || c === ".")) {
    throw new BangerError("E_BAD_REQUEST", `guest path must not be the root directory, got ${JSON.stringify(p)}`);
  }
  if (trimmed.split("/").includes("..")) throw new BangerError("E_BAD_REQUEST", `guest path must not contain "..", got ${JSON.stringify(p)}`);
  return trimmed;
}

/**
 * One command line reading a tar stream on stdin into guestPath. `-i` because
 * the stream is two archives back to back (the files, then the sanitized
 * .git/config); `u+w` first so a push over an earlier read-only push works.
 */
export function ExtractCommand(guestPath: string): string {
  const q = shellQuote(guestPath);
  return `mkdir -p -- ${q} && { chmod -R u+w -- ${q} 2>/dev/null || true; } && tar -x -i --no-same-owner -f - -C ${q}`;
}

const GIT_CHECK = `command -v git >/dev/null 2>&1 || { echo "git is not installed in the guest" >&2; exit ${NO_GIT_EXIT}; }`;

/** Mark the workspace safe for git (it is owned by another uid than the guest's git user may expect) and freeze it when read-only. */
export function FinalizeScript(guestPath: string, readOnly: boolean): string {
  const lines = [
    "set -e",
    `DIR=${shellQuote(guestPath)}`,
    GIT_CHECK,
    // --add appends: skip when present so repeated pushes don't grow ~/.gitconfig.
    `if ! git config --global --get-all safe.directory 2>/dev/null | grep -qxF -- "$DIR"; then`,
    `  git config --global --add safe.directory "$DIR"`,
    "fi",
  ];
  if (readOnly) lines.push(`chmod -R a-w "$DIR"`);
  return lines.join("\n") + "\n";
}

/**
 * Print `git diff --binary` of everything in the guest repo that differs from
 * its HEAD, untracked (not ignored) files included. A throwaway index and
 * object dir (with the repo's objects as an alternate) keep the guest's own
 * index and object store untouched, so it works on a read-only workspace too.
 */
export function DiffScript(guestPath: string): string {
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
    `if git rev-parse --verify -q HEAD >/dev/null; then git read-tree HEAD; fi`,
    `git add -A .`,
    `git -c core.quotepath=false diff --cached --binary --no-color --no-ext-diff --src-prefix=a/ --dst-prefix=b/`,
  ].join("\n") + "\n";
}
