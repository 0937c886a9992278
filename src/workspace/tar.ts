/**
 * Host side of a workspace push: which files go (git decides), the tar stream
 * that carries them, and the .git/config that goes instead of the real one.
 */
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError } from "../shared/errors.ts";
import type { Exec } from "../host/types.ts";
import { lastLine, missingToolMessage } from "../host/tools.ts";

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
    if (!_exists(join(root, p))) continue; // tracked but deleted: tar would fail on it
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
  let entries;
  try {
    entries = readdirSync(join(root, rel), { withFileTypes: true });
  } catch {
    return;
  }
  if (entries.length === 0) out.push(rel);
  for (const e of entries) if (e.isDirectory()) _emptyDirsUnder(root, `${rel}/${e.name}`, out);
}

function _exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
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

/** Bytes of a tar stream, as produced by a tar process. */
export type TarStream = AsyncIterable<Uint8Array>;

/** Runs `tar` on the host; injected so tests can record or replace it. */
export interface TarRunner {
  /** `tar -C cwd --null -T - -cf -` with `paths` on stdin (NUL-separated), minus `excludes`. */
  create(cwd: string, paths: string[], excludes: string[]): TarStream;
}

/** The real tar, through Bun.spawn (Exec buffers output as text; a tar is binary and may be large). */
export function createTarRunner(): TarRunner {
  return {
    async *create(cwd, paths, excludes) {
      const args = ["tar", "-C", cwd, "--anchored", ...excludes.map((e) => `--exclude=${e}`), "--no-anchored", "--null", "--verbatim-files-from", "-T", "-", "-cf", "-"];
      let proc;
      try {
        proc = Bun.spawn(args, { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
      } catch (e) {
        throw new BangerError("E_MISSING_TOOL", missingToolMessage("tar"), { cause: e });
      }
      const errText = new Response(proc.stderr).text();
      try {
        // awaited so a failing pending write lands in this catch, not as an unhandled rejection
        await proc.stdin.write(paths.join("\0") + (paths.length ? "\0" : ""));
        await proc.stdin.end();
      } catch {
        // a tar that died before reading its list: its exit code and stderr below say why
      }
      let finished = false;
      let bytes = 0;
      try {
        for await (const chunk of proc.stdout) {
          bytes += chunk.length;
          yield chunk;
        }
        finished = true;
      } finally {
        if (!finished) proc.kill();
      }
      const code = await proc.exited;
      // 1 = "some files changed while being read": the archive is still whole (but then there is one)
      if (code !== 0 && !(code === 1 && bytes > 0)) throw new BangerError("E_INTERNAL", `tar failed (exit ${code}) in ${cwd}: ${lastLine(await errText)}`);
    },
  };
}

/**
 * The whole push stream: the repo's files and .git (without its config), then
 * a second archive holding the sanitized .git/config and .git/BANGER_BASE
 * (the commit exports are relative to). The guest reads both with `tar -i`.
 */
export async function* workspaceTar(tar: TarRunner, files: WorkspaceFiles, sanitizedConfig: string): TarStream {
  yield* tar.create(files.root, files.paths, GIT_EXCLUDES);
  const dir = mkdtempSync(join(tmpdir(), "banger-ws-"));
  try {
    mkdirSync(join(dir, ".git"));
    writeFileSync(join(dir, ".git", "config"), sanitizedConfig, { mode: 0o644 });
    writeFileSync(join(dir, ".git", "BANGER_BASE"), files.head ? files.head + "\n" : "", { mode: 0o644 });
    yield* tar.create(dir, ["./.git/config", "./.git/BANGER_BASE"], []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
