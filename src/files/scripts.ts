/**
 * Shell for files in a VM and for `vm cp`, as pure functions of their inputs.
 * Each script is a `.sh` file in ./scripts/, given its values by renderScript
 * (quoted `NAME='value'` lines before it). archive.sh and extract.sh run on
 * either side of a copy: in the guest over SSH, or on the host for the CLI.
 */
import type { FileEvent, FileInfo } from "../shared/api.ts";
import { BangerError, type ErrorCode } from "../shared/errors.ts";
import { renderScript, shellQuote } from "../shared/quote.ts";
import ARCHIVE_SH from "./scripts/archive.sh" with { type: "text" };
import COMMIT_SH from "./scripts/commit.sh" with { type: "text" };
import EXTRACT_SH from "./scripts/extract.sh" with { type: "text" };
import INFO_SH from "./scripts/info.sh" with { type: "text" };
import MKDIR_SH from "./scripts/mkdir.sh" with { type: "text" };
import READ_SH from "./scripts/read.sh" with { type: "text" };
import REMOVE_SH from "./scripts/remove.sh" with { type: "text" };
import WATCH_SH from "./scripts/watch.sh" with { type: "text" };
import WRITE_SH from "./scripts/write.sh" with { type: "text" };
import type { SplitPath } from "./paths.ts";

/** Exit statuses the scripts use for what a person should be told in their own words. */
export const EXIT = {
  NOT_FOUND: 44,
  NOT_DIR: 45,
  IS_DIR: 46,
  DIR_TO_FILE: 47,
  NOT_EMPTY: 48,
  EXISTS: 49,
  NOT_REGULAR: 52,
} as const;

const _codes = {
  NOT_FOUND_EXIT: EXIT.NOT_FOUND,
  NOT_DIR_EXIT: EXIT.NOT_DIR,
  IS_DIR_EXIT: EXIT.IS_DIR,
  DIR_TO_FILE_EXIT: EXIT.DIR_TO_FILE,
  NOT_EMPTY_EXIT: EXIT.NOT_EMPTY,
  EXISTS_EXIT: EXIT.EXISTS,
  NOT_REGULAR_EXIT: EXIT.NOT_REGULAR,
};
/** Only the exit codes a script names: renderScript refuses values a script does not use. */
function _exits(body: string): Record<string, number> {
  return Object.fromEntries(Object.entries(_codes).filter(([k]) => body.includes(`$${k}`) || body.includes(`\${${k}`)));
}
function _render(body: string, vars: Record<string, string | number>): string {
  return renderScript(body, { ...vars, ..._exits(body) });
}

export const infoScript = (p: string, depth: number) => _render(INFO_SH, { P: p, DEPTH: depth });
export const readScript = (p: string) => _render(READ_SH, { P: p });
export const writeScript = (p: SplitPath, mode: string) => _render(WRITE_SH, { P: p.path, PARENT: p.parent, MODE: mode });
export const mkdirScript = (p: SplitPath, parents: boolean) => _render(MKDIR_SH, { P: p.path, PARENT: p.parent, PARENTS: parents ? 1 : 0 });
export const removeScript = (p: string, recursive: boolean) => _render(REMOVE_SH, { P: p, RECURSIVE: recursive ? 1 : 0 });
export const watchScript = (p: string, recursive: boolean, intervalMs: number) =>
  _render(WATCH_SH, { P: p, RECURSIVE: recursive ? 1 : 0, INTERVAL: (Math.max(100, intervalMs) / 1000).toFixed(1) });
/** The sending half of a copy: a tar of p with its basename as the one top-level entry. */
export const archiveScript = (p: SplitPath) => _render(ARCHIVE_SH, { PARENT: p.parent, NAME: p.name, DIR_ONLY: p.slash ? 1 : 0 });
/** What a copy's top-level entry is, when the sender knows: extract.sh then refuses a dir onto a file before reading the stream. */
export type CopyKind = "dir" | "file" | "";
/** The kind extract.sh is told for an entry of this type (a host lstat's or a guest stat's): a symlink or other is left to its later check. */
export const copyKindOf = (type: string | undefined): CopyKind => (type === "dir" || type === "file" ? type : "");
/** The receiving half: `name` is the tar's top-level entry ("" for a user's tar into an existing dir). */
export const extractScript = (dest: SplitPath, name: string, contents: boolean, kind: CopyKind = "") =>
  _render(EXTRACT_SH, { DEST: dest.path, PARENT: dest.parent, NAME: name, CONTENTS: contents ? 1 : 0, SLASH: dest.slash ? 1 : 0, KIND: kind });

/** Move what a write or copy staged (`from`, in or equal to `tmp`) to dest, or with abort only remove `tmp`. */
export const commitScript = (from: string, tmp: string, dest: string, abort: boolean) => _render(COMMIT_SH, { FROM: from, TMP: tmp, DEST: dest, ABORT: abort ? 1 : 0 });

/**
 * What write.sh or extract.sh staged: the temp path and the path it is for
 * (the dest, or what a symlink dest points at), the temp checked to be the
 * kind it makes, next to that path (`DIR/.banger-write-*` or
 * `DIR/.banger-cp-*`), before a commit moves or removes it; null when
 * nothing was staged (a copy into a dir).
 */
export function stagedPath(out: Uint8Array, kind: "write" | "cp"): { tmp: string; dest: string } | null {
  const text = Buffer.from(out).toString("utf8");
  if (text === "") return null;
  const [tmp = "", dest = "", ...rest] = text.split("\0");
  const dir = dest.slice(0, dest.lastIndexOf("/")) || "";
  const prefix = `${dir}/.banger-${kind}-`;
  const t = tmp.replace(/^\/+/, "/"); // a dest under / is staged as //.banger-…
  if (!dest.startsWith("/") || rest.join("") !== "" || !t.startsWith(prefix) || t.slice(prefix.length).includes("/")) {
    throw new BangerError("E_INTERNAL", `the ${kind} script staged an unexpected path: ${JSON.stringify(text).slice(0, 160)}`);
  }
  return { tmp, dest };
}

/** A stream that did not arrive whole: nothing was put in place (or, into an existing dir, part of it may have been). */
export function cutError(what: string, where: string, inPlace = false): BangerError {
  return new BangerError("E_STATE", `${what}: the stream was cut before its end: ${where} ${inPlace ? "may hold part of it (it was extracted into the existing dir)" : "was left as it was"}`);
}

/** The longest command line sent in the one-bash form: dropbear refuses an exec request over 9000 bytes (MAX_CMD_LEN). */
const ONE_BASH_MAX = 8000;

/**
 * A script as one command line for a remote shell (its stdin stays free for
 * data). A login shell that is bash (the usual root's) runs it itself: a
 * `bash -c SCRIPT` would start a second bash, and under TCG every program
 * costs 50-180 ms. Any other shell hands it to bash: it reads no further
 * than the `exec`, so bash's syntax after it is never parsed by it. That
 * line holds the script twice: a long one goes as `bash -c SCRIPT` alone.
 */
export function bashCommand(script: string): string {
  const quoted = shellQuote(script);
  const one = `case "\${BASH_VERSION-}" in '') exec bash -c ${quoted} ;; esac\n${script}`;
  return Buffer.byteLength(one) <= ONE_BASH_MAX ? one : `bash -c ${quoted}`;
}

/** Comment and blank lines out of a script file (before values are put in: theirs stay as they are), so more fit in a command line. */
export function compactScript(sh: string): string {
  return (
    sh
      .split("\n")
      .filter((l) => !/^\s*(#.*)?$/.test(l))
      .join("\n") + "\n"
  );
}

const _types: Record<string, FileInfo["type"]> = { f: "file", d: "dir", l: "symlink" };

/** Records of info.sh/write.sh/mkdir.sh: six NUL-terminated fields each. */
export function parseInfo(bytes: Uint8Array): FileInfo[] {
  const f = Buffer.from(bytes).toString("utf8").split("\0");
  const out: FileInfo[] = [];
  for (let i = 0; i + 6 <= f.length; i += 6) {
    const [y, size, mode, mtime, target, path] = f.slice(i, i + 6) as [string, string, string, string, string, string];
    const type = _types[y] ?? "other";
    const info: FileInfo = { name: path === "/" ? "/" : path.slice(path.lastIndexOf("/") + 1), path, type, size: Number(size), mode: parseInt(mode, 8), mtime: new Date(Number(mtime) * 1000).toISOString() };
    if (type === "symlink") info.target = target;
    out.push(info);
  }
  return out;
}

/** watch.sh's records as they arrive: three NUL-terminated fields each; a partial record waits for its rest. */
export function watchParser(onEvent: (ev: FileEvent) => void): (chunk: Uint8Array) => void {
  let buf = Buffer.alloc(0);
  const fields: string[] = [];
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    let i: number;
    while ((i = buf.indexOf(0)) >= 0) {
      fields.push(buf.subarray(0, i).toString("utf8"));
      buf = buf.subarray(i + 1);
      if (fields.length < 3) continue;
      const [op, y, path] = fields.splice(0, 3) as [string, string, string];
      if (op === "ping") continue;
      onEvent({ op: op as FileEvent["op"], type: _types[y] ?? "other", path });
    }
  };
}

/** tar's lines that only say an error came before (or that it goes on after one): never the reason. */
const _TAR_SUMMARY = /^tar: (Exiting with failure status due to previous errors|Error is not recoverable: exiting now|Skipping to next header)$/;

/** The line of stderr that says it (the first matching `re`; else the last that is not one of tar's summaries), kept short. */
function _tail(stderr: string, re?: RegExp): string {
  const lines = stderr.trim().split("\n").map((l) => l.trim()).filter(Boolean);
  const said = lines.filter((l) => !_TAR_SUMMARY.test(l));
  const line = (re && lines.find((l) => re.test(l))) || (said.at(-1) ?? lines.at(-1) ?? "");
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}

/**
 * A script's failure as one line: what could not be done to `where`
 * (`box:/etc/x` or a host path), with a code the CLI turns into its exit
 * status. Script exits name the common cases; tools' own messages name
 * permission and disk-full ones.
 */
export function scriptError(code: number, stderr: string, what: string, where: string): BangerError {
  const e = (c: ErrorCode, m: string) => new BangerError(c, m);
  switch (code) {
    case EXIT.NOT_FOUND:
      return e("E_NOT_FOUND", `${what}: no such file or directory: ${where}`);
    case EXIT.NOT_DIR:
      return e("E_CONFLICT", `${what}: not a directory: ${where}`);
    case EXIT.IS_DIR:
      return e("E_CONFLICT", `${what}: is a directory: ${where}`);
    case EXIT.DIR_TO_FILE:
      return e("E_CONFLICT", `${what}: cannot copy a directory onto a file: ${where}`);
    case EXIT.NOT_EMPTY:
      return e("E_CONFLICT", `${what}: directory not empty (use --recursive): ${where}`);
    case EXIT.EXISTS:
      return e("E_CONFLICT", `${what}: already exists: ${where}`);
    case EXIT.NOT_REGULAR:
      return e("E_CONFLICT", `${what}: not a regular file (a device, FIFO or socket is never replaced): ${where}`);
  }
  const denied = /Permission denied|Operation not permitted|Read-only file system/;
  if (denied.test(stderr)) return e("E_PERMISSION", `${what}: permission denied: ${where} (${_tail(stderr, denied)})`);
  const full = /No space left on device|Disk quota exceeded/;
  if (full.test(stderr)) return e("E_STATE", `${what}: the disk is full: ${where} (${_tail(stderr, full)})`);
  const missing = /No such file or directory/;
  if (missing.test(stderr)) return e("E_NOT_FOUND", `${what}: no such file or directory: ${where} (${_tail(stderr, missing)})`);
  return e("E_STATE", `${what} failed (exit ${code}): ${where}${_tail(stderr) ? `: ${_tail(stderr)}` : ""}`);
}

/** `vm:path` (or a host path) for a message: quoted when it holds anything that could break the line or read ambiguously. */
export function placeLabel(vm: string | null, path: string): string {
  const p = /^[\w./@+,:=~-]+$/.test(path) ? path : JSON.stringify(path);
  return vm === null ? p : `${vm}:${p}`;
}
