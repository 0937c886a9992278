/**
 * Host side of a workspace push: which files go (git decides), the tar stream
 * that carries them, and the .git/config that goes instead of the real one.
 */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError } from "../shared/errors.ts";
import { createFS } from "../host/fs.ts";
import type { TarRunner, TarStream } from "../host/tar.ts";
import { lastLine } from "../host/tools.ts";
import { lexistsSync, readDirSync } from "../host/tree.ts";
import type { Exec, FS } from "../host/types.ts";

/** A repo as git sees it: its top directory and the paths (relative, "./"-prefixed) to send. */
export interface WorkspaceFiles {
  root: string;
  /** Tracked + untracked-not-ignored files that exist on disk, empty untracked dirs, then ".git". */
  paths: string[];
  /** HEAD's commit id, "" when HEAD is unborn: what exports are relative to. */
  head: string;
}

/** Files under .git that never leave the host: the real config (sent sanitized instead), FETCH_HEAD (remote URLs), and a stray base marker. */
export const GIT_EXCLUDES = ["./.git/config", "./.git/FETCH_HEAD", "./.git/BANGER_BASE", "./.git/BANGER_SENT"];

/** The repo's top directory, or E_BAD_REQUEST when sourcePath is not inside a git work tree with a .git directory. */
export async function repoRoot(exec: Exec, sourcePath: string): Promise<string> {
  const r = await exec.run("git", ["-C", sourcePath, "rev-parse", "--show-toplevel", "--absolute-git-dir"], { check: false });
  if (r.exitCode !== 0) {
    // git judged the path ("fatal: not a git repository", "cannot change to"); anything else is git itself failing
    if (!/^fatal: /m.test(r.stderr)) throw new BangerError("E_INTERNAL", `git failed (exit ${r.exitCode}) in ${sourcePath}: ${lastLine(r.stderr, r.stdout)}`);
    throw new BangerError("E_BAD_REQUEST", `${sourcePath} is not a git repository`);
  }
  const [top, gitDir] = r.stdout.trim().split("\n");
  if (!top || !gitDir) throw new BangerError("E_BAD_REQUEST", `${sourcePath} is not a git work tree (bare repository?)`);
  if (gitDir !== join(top, ".git")) {
    throw new BangerError("E_BAD_REQUEST", `${sourcePath}: its git dir is ${gitDir}, not ${top}/.git (worktrees and submodule checkouts are not supported)`);
  }
  return top;
}

/**
 * HEAD's commit ("" when unborn), after refusing what a workspace cannot
 * carry faithfully: staged-but-uncommitted changes (an export could not tell
 * them from the guest's work) and submodules (their content lives in other
 * repos).
 */
export async function checkRepoState(exec: Exec, root: string): Promise<string> {
  const head = (await exec.run("git", ["-C", root, "rev-parse", "--verify", "-q", "HEAD"], { check: false })).stdout.trim();
  const stage = await exec.run("git", ["-C", root, "ls-files", "-z", "--stage"]);
  const subs = stage.stdout.split("\0").filter((l) => l.startsWith("160000 ")).map((l) => l.slice(l.indexOf("\t") + 1));
  if (subs.length) {
    throw new BangerError("E_BAD_REQUEST", `${root} has submodules (${subs.slice(0, 3).join(", ")}${subs.length > 3 ? ", …" : ""}): workspaces do not copy submodules; prepare each submodule as its own workspace`);
  }
  if (head) {
    const staged = await exec.run("git", ["-C", root, "diff", "--cached", "--quiet", "--no-ext-diff"], { check: false });
    if (staged.exitCode !== 0) {
      throw new BangerError("E_BAD_REQUEST", `${root} has staged changes that are not committed: commit them (git commit) or set them aside (git stash) first`);
    }
  }
  return head;
}

/** What to send: `git ls-files --cached --others --exclude-standard` (minus files deleted on disk), empty untracked dirs, then .git. */
export async function listWorkspaceFiles(exec: Exec, sourcePath: string): Promise<WorkspaceFiles> {
  const root = await repoRoot(exec, sourcePath);
  const head = await checkRepoState(exec, root);
  const r = await exec.run("git", ["-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
  const seen = new Set<string>();
  const paths: string[] = [];
  for (const p of r.stdout.split("\0")) {
    if (!p || seen.has(p)) continue; // a file in conflict is listed once per stage
    seen.add(p);
    if (!lexistsSync(join(root, p))) continue; // tracked but deleted: tar would fail on it
    // "./" so a name starting with "-" is never read as a tar option.
    paths.push(`./${p}`);
  }
  // git lists no directories; --directory names untracked ones, and the empty ones among them must travel too.
  const dirs = await exec.run("git", ["-C", root, "ls-files", "-z", "--others", "--exclude-standard", "--directory"]);
  // A collapsed untracked dir ("a/") may hold empty dirs deeper down; those git does not ignore travel too.
  const empty: string[] = [];
  for (const d of dirs.stdout.split("\0")) if (d.endsWith("/")) _emptyDirsUnder(root, d.slice(0, -1), empty);
  if (empty.length) {
    const ign = await exec.run("git", ["-C", root, "check-ignore", "-z", "--stdin"], { input: empty.map((e) => e + "/").join("\0") + "\0", check: false });
    const ignored = new Set(ign.stdout.split("\0").filter(Boolean).map((e) => e.replace(/\/$/, "")));
    for (const e of empty) if (!ignored.has(e)) paths.push(`./${e}`);
  }
  paths.push("./.git");
  return { root, paths, head };
}

/** Collect `rel` and the dirs below it that hold nothing at all (symlinks are not followed). */
function _emptyDirsUnder(root: string, rel: string, out: string[]): void {
  const entries = readDirSync(join(root, rel));
  if (!entries) return;
  if (entries.length === 0) out.push(rel);
  for (const e of entries) if (e.type === "dir") _emptyDirsUnder(root, `${rel}/${e.name}`, out);
}

/** A URL with any `user:pass@` / `token@` userinfo removed; scp-like `git@host:x` is left alone. */
export function stripUrlCredentials(url: string): string {
  return url.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@]*@/, "$1");
}

/**
 * .git/config without credentials: `[credential]` / `[credential "…"]`
 * sections dropped, every `extraheader` (http.extraHeader,
 * http.<url>.extraHeader) dropped, userinfo stripped from `url`/`pushurl`
 * values and from `[url "…"]` / `[http "…"]` subsection names.
 */
export function sanitizeGitConfig(text: string): string {
  const out: string[] = [];
  let dropSection = false;
  let skippingContinuation = false;
  for (const line of text.split("\n")) {
    if (skippingContinuation) {
      skippingContinuation = /\\\s*$/.test(line);
      continue;
    }
    const header = /^\s*\[\s*([^\]\s"]+)(?:\s+"((?:[^"\\]|\\.)*)")?\s*\]/.exec(line);
    if (header) {
      const section = header[1]!.toLowerCase();
      dropSection = section === "credential" || section.startsWith("credential.");
      if (dropSection) continue;
      // Section names carry URLs too: `[http "SCHEME://tok@host"]`, `[url "SCHEME://u:p@host/"]`, `[http.SCHEME://u@host]`.
      // A key on the header's own line is dropped (rare, and it could be anything).
      out.push(line.slice(0, header.index + header[0].length).replace(/(:\/\/)[^/@\s"\]]*@/g, "$1"));
      continue;
    }
    if (dropSection) continue;
    const kv = /^(\s*)([A-Za-z][A-Za-z0-9-]*)(\s*=\s*)(.*)$/.exec(line);
    if (kv) {
      const key = kv[2]!.toLowerCase();
      // in any section: http.extraHeader, http.<url>.extraHeader and legacy spellings alike
      if (key === "extraheader") {
        skippingContinuation = /\\\s*$/.test(line);
        continue;
      }
      if (key === "url" || key === "pushurl" || key === "insteadof" || key === "pushinsteadof") {
        const raw = kv[4]!;
        const quoted = /^"(.*)"(\s*[#;].*)?$/.exec(raw);
        const value = quoted ? `"${stripUrlCredentials(quoted[1]!)}"${quoted[2] ?? ""}` : stripUrlCredentials(raw);
        out.push(`${kv[1]}${kv[2]}${kv[3]}${value}`);
        continue;
      }
    }
    out.push(line);
  }
  return out.join("\n");
}

/** The host's tar (src/host/tar.ts): workspace code streams through it, tests pass their own. */
export { createTarRunner, type TarRunner, type TarStream } from "../host/tar.ts";

/**
 * The whole push stream: the repo's files and .git (without its config), then
 * a second archive holding the sanitized .git/config and .git/BANGER_BASE
 * (the commit exports are relative to). The guest reads both with `tar -i`.
 */
export async function* workspaceTar(tar: TarRunner, files: WorkspaceFiles, sanitizedConfig: string, fs: Pick<FS, "mkdtemp" | "mkdirp" | "writeFile" | "rmrf"> = createFS()): TarStream {
  yield* tar.create(files.root, files.paths, GIT_EXCLUDES);
  const dir = await fs.mkdtemp(join(tmpdir(), "banger-ws-"));
  try {
    await fs.mkdirp(join(dir, ".git"), 0o755);
    await fs.writeFile(join(dir, ".git", "config"), sanitizedConfig, 0o644);
    await fs.writeFile(join(dir, ".git", "BANGER_BASE"), files.head ? files.head + "\n" : "", 0o644);
    yield* tar.create(dir, ["./.git/config", "./.git/BANGER_BASE"], []);
  } finally {
    await fs.rmrf(dir);
  }
}
