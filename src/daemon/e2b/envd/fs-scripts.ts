/**
 * envd's filesystem in the guest, as pure functions: the scripts (user.sh
 * first, then one `.sh` per call, values passed by renderScript), the
 * records they print, and the exit statuses they fail with, turned into
 * what the E2B SDK expects (its EntryInfo, its event types, its errors).
 */
import { posix } from "node:path";
import { renderScript } from "../../../shared/quote.ts";
import { EXIT, compactScript } from "../../../files/scripts.ts";
import GETENT_SH from "../../../sessions/scripts/getent.sh" with { type: "text" };
import USER_SH from "./scripts/user.sh" with { type: "text" };
import STAT_SH from "./scripts/stat.sh" with { type: "text" };
import LIST_SH from "./scripts/list.sh" with { type: "text" };
import MKDIR_SH from "./scripts/mkdir.sh" with { type: "text" };
import MOVE_SH from "./scripts/move.sh" with { type: "text" };
import REMOVE_SH from "./scripts/remove.sh" with { type: "text" };
import READ_SH from "./scripts/read.sh" with { type: "text" };
import WRITE_SH from "./scripts/write.sh" with { type: "text" };
import COMMIT_SH from "./scripts/commit.sh" with { type: "text" };
import WATCH_SH from "./scripts/watch.sh" with { type: "text" };
import type { CallUser } from "./user.ts";

/** Exit statuses of the envd scripts: banger's files ones, plus the two only envd has. */
export const FS_EXIT = { ...EXIT, NO_USER: 50, NO_INOTIFY: 51 } as const;

const _codes: Record<string, number> = {
  NOT_FOUND_EXIT: FS_EXIT.NOT_FOUND,
  NOT_DIR_EXIT: FS_EXIT.NOT_DIR,
  IS_DIR_EXIT: FS_EXIT.IS_DIR,
  EXISTS_EXIT: FS_EXIT.EXISTS,
  NO_USER_EXIT: FS_EXIT.NO_USER,
  NO_INOTIFY_EXIT: FS_EXIT.NO_INOTIFY,
};

/** The SDK's own words for what went wrong, each with its Connect code and HTTP status (see filesystem.ts, files.ts). */
export type FsErrorKind = "not_found" | "invalid" | "exists" | "user" | "precondition" | "permission" | "no_space" | "internal";

export class EnvdFsError extends Error {
  constructor(
    readonly kind: FsErrorKind,
    message: string,
  ) {
    super(message);
    this.name = "EnvdFsError";
  }
}

/** A value the guest shell could not carry intact (NUL ends a C string) is refused before any script. */
function _checkValue(what: string, v: string): void {
  if (v.includes("\0")) throw new EnvdFsError("invalid", `${what} must not contain a NUL byte`);
}

function _render(body: string, user: CallUser, vars: Record<string, string | number>): string {
  _checkValue("user", user.name);
  for (const [k, v] of Object.entries(vars)) if (typeof v === "string") _checkValue(k === "P" ? "path" : k.toLowerCase(), v);
  const whole = USER_SH + body;
  const exits = Object.fromEntries(Object.entries(_codes).filter(([k]) => whole.includes(`$${k}`) || whole.includes(`\${${k}`)));
  // compact: the command line carries the script twice (bashCommand), and dropbear takes at most 9000 bytes
  return renderScript([GETENT_SH, USER_SH, body].map(compactScript), { E2B_USER: user.name, DEFAULTED: user.defaulted ? 1 : 0, ...vars, ...exits });
}

export const statScript = (user: CallUser, p: string) => _render(STAT_SH, user, { P: p });
export const listScript = (user: CallUser, p: string, depth: number) => _render(LIST_SH, user, { P: p, DEPTH: Math.max(1, Math.floor(depth)) });
export const makeDirScript = (user: CallUser, p: string) => _render(MKDIR_SH, user, { P: p });
export const moveScript = (user: CallUser, src: string, dst: string) => _render(MOVE_SH, user, { SRC: src, DST: dst });
export const removeScript = (user: CallUser, p: string) => _render(REMOVE_SH, user, { P: p });
export const readScript = (user: CallUser, p: string, gzip: boolean) => _render(READ_SH, user, { P: p, GZIP: gzip ? 1 : 0 });
export const writeScript = (user: CallUser, p: string, gunzip: boolean) => _render(WRITE_SH, user, { P: p, GUNZIP: gunzip ? 1 : 0 });
export const commitScript = (user: CallUser, tmp: string, dest: string, abort: boolean) => _render(COMMIT_SH, user, { TMP: tmp, DEST: dest, ABORT: abort ? 1 : 0 });
export const watchScript = (user: CallUser, p: string, recursive: boolean) => _render(WATCH_SH, user, { P: p, RECURSIVE: recursive ? 1 : 0 });

/** An entry as envd describes it (the SDK's EntryInfo before protobuf). */
export interface GuestEntry {
  name: string;
  /** A symlink is the type of what it points at (as envd); "symlink" only when that cannot be found. */
  type: "file" | "dir" | "symlink" | "other";
  path: string;
  size: number;
  /** Permission bits (mode & 0o777), as Go's FileMode.Perm(). */
  mode: number;
  /** Go's FileMode.String() of the entry itself: "-rw-r--r--", "drwxr-xr-x", "Lrwxrwxrwx". */
  permissions: string;
  owner: string;
  group: string;
  modified: { seconds: bigint; nanos: number };
  /** Absolute path a symlink points at (resolved against its dir). */
  symlinkTarget?: string;
}

const FIELDS = 9;

/** Go's FileMode letters for find's %y type and the octal mode's high bits, then rwx. */
export function goPermissions(findType: string, mode: number): string {
  let s = "";
  if (findType === "d") s += "d";
  if (findType === "l") s += "L";
  if (findType === "b" || findType === "c") s += "D";
  if (findType === "p") s += "p";
  if (findType === "s") s += "S";
  if (mode & 0o4000) s += "u";
  if (mode & 0o2000) s += "g";
  if (findType === "c") s += "c";
  if (mode & 0o1000) s += "t";
  if (s === "") s = "-";
  const rwx = "rwxrwxrwx";
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? rwx[i] : "-";
  return s;
}

/** find's `%T@` ("1733470000.1234567890") as a protobuf Timestamp's parts. */
export function parseEpoch(t: string): { seconds: bigint; nanos: number } {
  const [sec = "0", frac = ""] = t.split(".");
  return { seconds: BigInt(sec || "0"), nanos: Number((frac + "000000000").slice(0, 9)) };
}

const _types: Record<string, GuestEntry["type"]> = { f: "file", d: "dir" };

/** The records user.sh's `entry` (and list.sh's find) print: nine NUL-terminated fields each. */
export function parseEntries(bytes: Uint8Array): GuestEntry[] {
  const f = Buffer.from(bytes).toString("utf8").split("\0");
  const out: GuestEntry[] = [];
  for (let i = 0; i + FIELDS <= f.length; i += FIELDS) {
    const [y, target, size, mode, owner, group, mtime, link, path] = f.slice(i, i + FIELDS) as [string, string, string, string, string, string, string, string, string];
    const bits = parseInt(mode, 8);
    const e: GuestEntry = {
      name: path === "/" ? "/" : path.slice(path.lastIndexOf("/") + 1),
      type: y === "l" ? (_types[target] ?? "symlink") : (_types[y] ?? "other"),
      path,
      size: Number(size),
      mode: bits & 0o777,
      permissions: goPermissions(y, bits),
      owner,
      group,
      modified: parseEpoch(mtime),
    };
    if (y === "l") e.symlinkTarget = posix.resolve(posix.dirname(path), link);
    out.push(e);
  }
  return out;
}

/** Walk order, as envd lists (Go's WalkDir): by path component, so a dir's contents come right after it. */
export function walkOrder(a: GuestEntry, b: GuestEntry): number {
  const x = a.path.split("/");
  const y = b.path.split("/");
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
  }
  return x.length - y.length;
}

/** write.sh's answer: the staged temp (checked to be the kind it makes, next to dest) and the absolute destination. */
export function parseStaged(out: Uint8Array): { tmp: string; dest: string } {
  const [tmp = "", dest = ""] = Buffer.from(out).toString("utf8").split("\0");
  const parent = posix.dirname(dest);
  const prefix = `${parent === "/" ? "" : parent}/.banger-write-`;
  if (!dest.startsWith("/") || !tmp.startsWith(prefix) || tmp.slice(prefix.length).includes("/")) {
    throw new EnvdFsError("internal", `the write script staged an unexpected path: ${JSON.stringify(tmp).slice(0, 120)}`);
  }
  return { tmp, dest };
}

/** The one line a script's failure says, and the kind of error it is for the SDK. */
export function fsError(code: number, stderr: string): EnvdFsError {
  const lines = stderr.trim().split("\n").map((l) => l.trim()).filter(Boolean);
  const pick = (re: RegExp) => lines.find((l) => re.test(l));
  const line = (lines.at(-1) ?? `exit ${code}`).slice(0, 300);
  switch (code) {
    case FS_EXIT.NOT_FOUND:
      return new EnvdFsError("not_found", line);
    case FS_EXIT.NOT_DIR:
    case FS_EXIT.IS_DIR:
      return new EnvdFsError("invalid", line);
    case FS_EXIT.EXISTS:
      return new EnvdFsError("exists", line);
    case FS_EXIT.NO_USER:
      return new EnvdFsError("user", line);
    case FS_EXIT.NO_INOTIFY:
      return new EnvdFsError("precondition", line);
  }
  const denied = pick(/Permission denied|Operation not permitted|Read-only file system/);
  if (denied) return new EnvdFsError("permission", denied);
  const full = pick(/No space left on device|Disk quota exceeded/);
  if (full) return new EnvdFsError("no_space", full);
  const missing = pick(/No such file or directory/);
  if (missing) return new EnvdFsError("not_found", missing);
  const notDir = pick(/Not a directory|Is a directory|Directory not empty|File exists|Invalid argument|not valid gzip/);
  if (notDir) return new EnvdFsError("invalid", notDir);
  return new EnvdFsError("internal", line);
}

/** A change under a watched dir, as the SDK names them; `name` is relative to the watched dir. */
export interface WatchEvent {
  type: "create" | "write" | "remove" | "rename" | "chmod";
  name: string;
  path: string;
}

const TEMP_RE = /^\.banger-(write|cp)-/;

/**
 * watch.sh's stdout as it arrives: first the watched dir's absolute path,
 * then (events, path) pairs from inotifywait, mapped as envd's fsnotify
 * maps them: CREATE and MOVED_TO → create, MODIFY → write, DELETE → remove,
 * MOVED_FROM → rename, ATTRIB → chmod. banger's own staged writes are not
 * shown: their temp file's events are dropped and its rename onto the
 * destination is the write it stands for. `onGone` when the watched dir
 * itself was deleted or moved away.
 */
export function watchParser(o: { onRoot(root: string): void; onEvent(ev: WatchEvent): void; onGone(): void }): (chunk: Uint8Array) => void {
  let buf = Buffer.alloc(0);
  let root: string | null = null;
  const pending: string[] = [];
  let stagedRename = false;
  const handle = (events: string, path: string) => {
    const ev = new Set(events.split(","));
    const bare = path.endsWith("/") && path.length > 1 ? path.slice(0, -1) : path;
    if (ev.has("DELETE_SELF") || ev.has("MOVE_SELF")) {
      if (bare === root) o.onGone();
      return;
    }
    const prefix = root === "/" ? "/" : `${root}/`;
    if (!bare.startsWith(prefix)) return;
    const name = bare.slice(prefix.length);
    const temp = TEMP_RE.test(posix.basename(bare));
    if (ev.has("MOVED_FROM")) {
      stagedRename = temp;
      if (!temp) o.onEvent({ type: "rename", name, path: bare });
      return;
    }
    if (ev.has("MOVED_TO")) {
      const staged = stagedRename;
      stagedRename = false;
      if (!temp) o.onEvent({ type: staged ? "write" : "create", name, path: bare });
      return;
    }
    if (temp) return;
    const type = ev.has("CREATE") ? "create" : ev.has("MODIFY") ? "write" : ev.has("DELETE") ? "remove" : ev.has("ATTRIB") ? "chmod" : null;
    if (type) o.onEvent({ type, name, path: bare });
  };
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    let i: number;
    while ((i = buf.indexOf(0)) >= 0) {
      const field = buf.subarray(0, i).toString("utf8");
      buf = buf.subarray(i + 1);
      if (root === null) {
        root = field;
        o.onRoot(field);
        continue;
      }
      pending.push(field);
      if (pending.length < 2) continue;
      const [events, path] = pending.splice(0, 2) as [string, string];
      handle(events, path);
    }
  };
}
