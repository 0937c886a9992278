import { posix } from "node:path";
import { BangerError } from "../shared/errors.ts";

/** A path as `vm cp` and the files routes take it apart. */
export interface SplitPath {
  /** Absolute, normalized, no trailing slash (but "/" stays "/"). */
  path: string;
  /** Its directory and last component (NAME is never "", "." or ".."). */
  parent: string;
  name: string;
  /** Written with a trailing "/" (or "/."): it must be a directory. */
  slash: boolean;
  /** Written as DIR/.: docker cp copies what is under DIR rather than DIR. */
  contents: boolean;
}

function _brief(p: string): string {
  const j = JSON.stringify(p);
  return j.length > 80 ? `${j.slice(0, 80)}…` : j;
}

/**
 * An absolute path taken apart; `base` resolves a relative one (the host's
 * cwd), a guest path must be absolute. NUL is refused here, with one line,
 * before it could cut a shell word.
 */
export function splitPath(p: string, where: "guest" | "host", base = "/"): SplitPath {
  if (p.length === 0) throw new BangerError("E_BAD_REQUEST", `${where} path must not be empty`);
  if (p.includes("\0")) throw new BangerError("E_BAD_REQUEST", `${where} path must not contain NUL: ${_brief(p)}`);
  if (where === "guest" && !p.startsWith("/")) throw new BangerError("E_BAD_REQUEST", `guest path must be absolute (start with /): ${_brief(p)}`);
  const contents = p === "." || p.endsWith("/.");
  const slash = contents || p.endsWith("/");
  const path = posix.resolve(base, p);
  if (path === "/") return { path, parent: "/", name: "", slash, contents };
  return { path, parent: posix.dirname(path), name: posix.basename(path), slash, contents };
}

/** A guest path for the files routes: absolute, normalized; "/" itself only where `allowRoot`. */
export function guestPath(p: string | undefined, allowRoot = true): SplitPath {
  if (p === undefined) throw new BangerError("E_BAD_REQUEST", `query parameter "path" is required (an absolute guest path)`);
  const s = splitPath(p, "guest");
  if (!allowRoot && s.name === "") throw new BangerError("E_BAD_REQUEST", `refusing to do that to the guest's root directory`);
  return s;
}

/** One side of `vm cp`: `VM:PATH` (VM as in VM names: no "/" before the colon) or a host path / "-". */
export type CpEnd = { vm: string; path: string } | { vm: null; path: string };

/** docker cp's reading: a colon before any slash names a VM; write ./a:b for a host file named a:b. */
export function parseCpEnd(arg: string): CpEnd {
  const m = /^([^/:]+):(.*)$/s.exec(arg);
  if (!m || arg.startsWith(".")) return { vm: null, path: arg };
  return { vm: m[1]!, path: m[2]! };
}
