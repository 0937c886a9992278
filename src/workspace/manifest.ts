/**
 * What a prepare sent, per file, so the next prepare of the same VM and guest
 * path can send only what changed. A signature is lstat data (type, mode,
 * size, mtime, ctime, inode): .git objects and packs never change once
 * written, so after a few edits only they, the index and the edited files
 * differ.
 */
import { existsSync, lstatExactSync, readDirSync } from "../host/tree.ts";
import { join } from "node:path";
import type { WorkspaceFiles } from "./tar.ts";

/** "./path" → signature, for every leaf (file, symlink, empty dir) a prepare sends. */
export type Entries = Record<string, string>;

/** Kept on the host (VMDir/workspaces/), written atomically after a prepare succeeded. */
export interface Manifest {
  guestPath: string;
  /** Also in the guest's .git/BANGER_SENT: proves the guest tree is the one this manifest describes. */
  token: string;
  /** A read-only tree is never reused: its files' modes were changed in place. */
  readOnly: boolean;
  entries: Entries;
}

function _sig(abs: string): string | null {
  const s = lstatExactSync(abs);
  return s && `${s.mode.toString(8)}:${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.ino}`;
}

/** Signatures of the work-tree entries in `files.paths` and of every leaf under .git except `excludes` ("./.git/…"). */
export function snapshot(files: WorkspaceFiles, excludes: readonly string[]): Entries {
  const out: Entries = {};
  for (const p of files.paths) {
    if (p === "./.git") continue;
    const s = _sig(join(files.root, p));
    if (s) out[p] = s;
  }
  const skip = new Set(excludes);
  const walk = (rel: string) => {
    const entries = readDirSync(join(files.root, rel));
    if (!entries) return;
    if (entries.length === 0) {
      const s = _sig(join(files.root, rel));
      if (s) out[rel] = s;
    }
    for (const e of entries) {
      const child = `${rel}/${e.name}`;
      if (skip.has(child)) continue;
      if (e.type === "dir") walk(child);
      else {
        const s = _sig(join(files.root, child));
        if (s) out[child] = s;
      }
    }
  };
  walk("./.git");
  return out;
}

/**
 * What to send and what to remove in the guest: `changed` are new or
 * different leaves; `removed` are leaves gone on the host, plus their parent
 * dirs that no longer exist there (deepest first is not needed: rm -rf).
 */
export function planDelta(root: string, prev: Entries, now: Entries): { changed: string[]; removed: string[] } {
  const changed = Object.keys(now).filter((p) => prev[p] !== now[p]);
  const removed = new Set<string>();
  for (const p of Object.keys(prev)) {
    if (p in now) continue;
    removed.add(p);
    for (let d = p.slice(0, p.lastIndexOf("/")); d.length > 2 && !existsSync(join(root, d)); d = d.slice(0, d.lastIndexOf("/"))) removed.add(d);
  }
  return { changed, removed: [...removed] };
}
