import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Names that break naive quoting: spaces, quotes, `;`, `$()`, backticks, a newline, leading dashes. */
export const HOSTILE_NAMES = ["sp ace", "it's", 'dq"x', "semi;colon", "$(touch pwned)", "`tick`", "new\nline", "-rf", "--help"];

/** type, mode, content hash and size, or link target of every path under root, by relative path. */
export function treeSnapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    const p = rel ? join(root, rel) : root;
    const st = lstatSync(p);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isSymbolicLink()) out[rel] = `link ${readlinkSync(p)}`;
    else if (st.isDirectory()) {
      if (rel) out[rel] = `dir ${mode}`;
      for (const e of readdirSync(p)) walk(rel ? join(rel, e) : e);
    } else out[rel] = `file ${mode} ${Bun.hash(readFileSync(p)).toString(16)} ${st.size}`;
  };
  walk("");
  return out;
}

/** A tree with a binary file, an exec bit, a 0600 file, a symlink, a dangling symlink, an empty dir and hostile names. */
export function makeTree(root: string): void {
  mkdirSync(join(root, "sub", "deeper"), { recursive: true });
  mkdirSync(join(root, "empty-dir"));
  const bin = Buffer.alloc(70_000);
  for (let i = 0; i < bin.length; i++) bin[i] = (i * 7919) & 0xff;
  writeFileSync(join(root, "blob.bin"), bin);
  writeFileSync(join(root, "run.sh"), "#!/bin/sh\necho ran\n");
  chmodSync(join(root, "run.sh"), 0o755);
  writeFileSync(join(root, "sub", "deeper", "private"), "secret\n");
  chmodSync(join(root, "sub", "deeper", "private"), 0o600);
  symlinkSync("sub/deeper/private", join(root, "link"));
  symlinkSync("/nonexistent/target", join(root, "dangling"));
  for (const n of HOSTILE_NAMES) writeFileSync(join(root, n), `content of ${n}\n`);
}
