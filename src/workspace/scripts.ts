/**
 * Guest-side shell for workspaces, as pure functions of their inputs. Each
 * script is a `.sh` file in ./scripts/, given its values by renderScript
 * (quoted `NAME='value'` lines before it); scripts use real newlines, never `\n`.
 *
 * A prepare never writes into the live guest path: the tar goes into a stage
 * dir next to it (StageCommand), which is swapped into place (ActivateScript)
 * keeping the previous tree aside, and that old tree is dropped only once
 * everything (hooks included) succeeded (FinalizeScript). RollbackScript puts
 * the old tree back from any point of that sequence.
 */
import { BangerError } from "../shared/errors.ts";
import { renderScript, shellQuote } from "../shared/quote.ts";
import ACTIVATE_SH from "./scripts/activate.sh" with { type: "text" };
import DELTA_STAGE_SH from "./scripts/delta-stage.sh" with { type: "text" };
import DIFF_SH from "./scripts/diff.sh" with { type: "text" };
import EXPORT_SH from "./scripts/export.sh" with { type: "text" };
import EXTRACT_SH from "./scripts/extract.sh" with { type: "text" };
import FINALIZE_SH from "./scripts/finalize.sh" with { type: "text" };
import GUARD_SH from "./scripts/guard.sh" with { type: "text" };
import LIST_SH from "./scripts/list.sh" with { type: "text" };
import REMOUNT_RO_SH from "./scripts/remount-ro.sh" with { type: "text" };
import ROLLBACK_SH from "./scripts/rollback.sh" with { type: "text" };
import SCRATCH_REPO_SH from "./scripts/scratch-repo.sh" with { type: "text" };
import STAGE_SH from "./scripts/stage.sh" with { type: "text" };

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

/** Exit status of the stage command when the guest tree holds work the host would not get back (new commits, changed files): replaced only when forced. */
export const GUEST_WORK_EXIT = 11;

/** Exit status of the delta stage command when the guest tree is not the one the host's manifest describes: send everything. */
export const STALE_EXIT = 10;
// File in the guest's .git holding the token of the prepare that made the tree (written last, so its mtime dates the tree).
const SENT_FILE = "BANGER_SENT";

// Files in the guest's .git recording the tree and refs a prepare left, which the next one checks before replacing them (guard.sh).
const TREE_FILE = "BANGER_TREE";
const REFS_FILE = "BANGER_REFS";

// File in the guest's .git naming the commit the workspace was prepared from (empty: unborn HEAD); also marks a banger workspace.
const BASE_FILE = "BANGER_BASE";

// Directories a workspace may live under (strictly below): never /, /etc, /usr and friends.
const ALLOWED_GUEST_ROOTS = ["/root", "/home", "/srv", "/opt", "/mnt", "/tmp", "/var/tmp", "/work", "/workspace", "/workspaces"];

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

/** A script run as `bash -c`, whose stdin is the command's own (a tar stream, a path list). */
function _bashC(script: string): string {
  return `bash -c ${shellQuote(script)}`;
}

/**
 * One command (bash -c) reading a tar stream on stdin into a new stage dir.
 * Refuses a guest path that exists and is neither empty nor an earlier
 * workspace, so a prepare never replaces someone's directory, and unless
 * `force`, an earlier workspace holding work the host would not get back.
 * Exits NOT_A_WORKSPACE_EXIT for such a path, GUEST_WORK_EXIT for such work
 * (what it is on stderr), DISK_FULL_EXIT when the guest filesystem filled up.
 */
export function StageCommand(guestPath: string, stage: string, force = false): string {
  const vars = { DIR: guestPath, STAGE: stage, BASE_FILE, NOT_A_WORKSPACE_EXIT, DISK_FULL_EXIT, TREE_FILE, REFS_FILE, GUEST_WORK_EXIT, FORCE: force ? "yes" : "no" };
  return _bashC(renderScript([LIST_SH, GUARD_SH, STAGE_SH, EXTRACT_SH], vars));
}

/**
 * First step of a re-prepare that sends only what changed (bash -c): the
 * guest tree, if it is the one the manifest describes, hard-linked into a new
 * stage without the NUL-separated paths on stdin. Exits STALE_EXIT when the
 * tree cannot be reused.
 */
export function DeltaStageCommand(guestPath: string, stage: string, token: string): string {
  return _bashC(renderScript(DELTA_STAGE_SH, { DIR: guestPath, STAGE: stage, TOKEN: token, SENT_FILE, STALE_EXIT }));
}

/** Read a tar stream on stdin into an existing stage dir (the delta after DeltaStageCommand). */
export function ExtractIntoStageCommand(stage: string): string {
  return _bashC(renderScript(EXTRACT_SH, { STAGE: stage, DISK_FULL_EXIT }));
}

/** Swap the stage into place (the old tree moves aside), then mark the path safe for git: it is owned by another uid than a guest user may run git as. */
export function ActivateScript(guestPath: string, stage: string, old: string): string {
  return renderScript(ACTIVATE_SH, { DIR: guestPath, STAGE: stage, OLD: old, NO_GIT_EXIT });
}

/**
 * After hooks succeeded: drop the old tree, record what the tree and refs
 * now are (the next prepare's guard) and the prepare's token; freeze the new tree when read-only (chmod, and a read-only bind mount for
 * root).
 */
export function FinalizeScript(guestPath: string, old: string, readOnly: boolean, token: string): string {
  return renderScript([LIST_SH, FINALIZE_SH], { DIR: guestPath, OLD: old, TOKEN: token, SENT_FILE, TREE_FILE, REFS_FILE, READ_ONLY: readOnly ? "yes" : "no" });
}

/** A read-only workspace's bind mount, made again after its VM booted (the chmod survived; the mount did not). */
export function RemountReadOnlyScript(guestPath: string): string {
  return renderScript(REMOUNT_RO_SH, { DIR: guestPath });
}

/**
 * Undo a prepare. Before activation only the stage (if any) goes. Once
 * activation started: if the stage is gone it was moved onto DIR, so DIR is
 * ours to remove; if the old tree was moved aside, it goes back; a stage still
 * present is removed last.
 */
export function RollbackScript(guestPath: string, stage: string, old: string, activated: boolean): string {
  return renderScript(ROLLBACK_SH, { DIR: guestPath, STAGE: stage, OLD: old, ACTIVATED: activated ? "yes" : "no" });
}

/**
 * Print `git diff --binary` of everything in the guest repo that differs from
 * its HEAD, untracked (not ignored) files included; the guest repo is never
 * written. Exits NOT_A_REPO_EXIT without a repository, NO_GIT_EXIT without git.
 */
export function DiffScript(guestPath: string): string {
  return renderScript([SCRATCH_REPO_SH, DIFF_SH], { DIR: guestPath, NO_GIT_EXIT, NOT_A_REPO_EXIT });
}

/**
 * Everything the guest has that the prepared-from commit lacks — its new
 * commits, plus uncommitted work (untracked files included) as one more
 * commit; the guest's HEAD, index and refs never move. `patch`: `git
 * format-patch --binary` of base..tip on stdout. `bundle`: a git bundle of
 * the guest's branch with base as its prerequisite, on stdout. Exits
 * NOTHING_NEW_EXIT when tip is the base. `topOnly` (a submodule): exits
 * NOT_A_REPO_EXIT unless guestPath is the top of its own repo.
 */
export function ExportScript(guestPath: string, format: "patch" | "bundle", o: { topOnly?: boolean } = {}): string {
  return renderScript([SCRATCH_REPO_SH, EXPORT_SH], { DIR: guestPath, NO_GIT_EXIT, NOT_A_REPO_EXIT, FORMAT: format, BASE_FILE, NOTHING_NEW_EXIT, TOP_ONLY: o.topOnly ? "yes" : "no" });
}
