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
import { lexistsSync, lstatTypeSync, readDirSync } from "../host/tree.ts";
import type { Exec, FS } from "../host/types.ts";

/** An initialized submodule: it travels with its work tree and its git dir (under the superproject's .git/modules). */
export interface Submodule {
  /** Its work tree, "./"-prefixed and relative to the superproject's top ("./lib/x"). */
  path: string;
  /** Its git dir, relative the same way ("./.git/modules/lib/x"). */
  gitDir: string;
  /** Its HEAD's commit ("" when unborn): what its export is relative to. */
  head: string;
}

/** A repo as git sees it: its top directory and the paths (relative, "./"-prefixed) to send. */
export interface WorkspaceFiles {
  root: string;
  /** Tracked + untracked-not-ignored files that exist on disk, empty untracked dirs, then ".git" (submodules' files and .git files included). */
  paths: string[];
  /** HEAD's commit id, "" when HEAD is unborn: what exports are relative to. */
  head: string;
  /** Initialized submodules, nested ones included, parents first. Uninitialized ones travel as the empty dirs they are. */
  submodules: Submodule[];
}

/** Files under .git that never leave the host: the real config (sent sanitized instead), FETCH_HEAD (remote URLs), and a stray base marker. */
export const GIT_EXCLUDES = ["./.git/config", "./.git/FETCH_HEAD", "./.git/BANGER_BASE", "./.git/BANGER_SENT"];

/** GIT_EXCLUDES for the superproject and each submodule's git dir. */
export function gitExcludes(files: Pick<WorkspaceFiles, "submodules">): string[] {
  return [...GIT_EXCLUDES, ...files.submodules.flatMap((m) => ["config", "FETCH_HEAD", "BANGER_BASE"].map((f) => `${m.gitDir}/${f}`))];
}

/** The files the second archive always brings (sanitized configs and export bases): a re-prepare drops them first. */
export function resentGitFiles(files: Pick<WorkspaceFiles, "submodules">): string[] {
  return ["./.git/config", "./.git/BANGER_BASE", ...files.submodules.flatMap((m) => [`${m.gitDir}/config`, `${m.gitDir}/BANGER_BASE`])];
}

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
    throw new BangerError("E_BAD_REQUEST", `${sourcePath}: its git dir is ${gitDir}, not ${top}/.git (worktrees and submodule checkouts are not supported; prepare the superproject)`);
  }
  return top;
}

/**
 * HEAD's commit ("" when unborn), after refusing what a workspace cannot
 * carry faithfully: staged-but-uncommitted changes (an export could not tell
 * them from the guest's work). `what` names the repo in the message.
 */
export async function checkRepoState(exec: Exec, root: string, what = root): Promise<string> {
  const head = (await exec.run("git", ["-C", root, "rev-parse", "--verify", "-q", "HEAD"], { check: false })).stdout.trim();
  if (head) {
    const staged = await exec.run("git", ["-C", root, "diff", "--cached", "--quiet", "--no-ext-diff", "--ignore-submodules=all"], { check: false });
    if (staged.exitCode !== 0) {
      throw new BangerError("E_BAD_REQUEST", `${what} has staged changes that are not committed: commit them (git commit) or set them aside (git stash) first`);
    }
  }
  return head;
}

/** What to send: `git ls-files --cached --others --exclude-standard` (minus files deleted on disk), empty untracked dirs, initialized submodules the same way, then .git. */
export async function listWorkspaceFiles(exec: Exec, sourcePath: string): Promise<WorkspaceFiles> {
  const root = await repoRoot(exec, sourcePath);
  const head = await checkRepoState(exec, root);
  const out: WorkspaceFiles = { root, paths: [], head, submodules: [] };
  await _collect(exec, out, "");
  out.paths.push("./.git");
  return out;
}

/** The paths of the repo at `prefix` (relative to the top, "" or ending in "/"), descending into its initialized submodules. */
async function _collect(exec: Exec, out: WorkspaceFiles, prefix: string): Promise<void> {
  const dir = join(out.root, prefix);
  const stage = await exec.run("git", ["-C", dir, "ls-files", "-z", "--stage"]);
  const gitlinks = new Set(stage.stdout.split("\0").filter((l) => l.startsWith("160000 ")).map((l) => l.slice(l.indexOf("\t") + 1)));
  const r = await exec.run("git", ["-C", dir, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
  const seen = new Set<string>();
  for (const p of r.stdout.split("\0")) {
    if (!p || seen.has(p)) continue; // a file in conflict is listed once per stage
    seen.add(p);
    if (!lexistsSync(join(dir, p))) continue; // tracked but deleted: tar would fail on it
    if (gitlinks.has(p)) {
      await _submodule(exec, out, `${prefix}${p}`);
      continue;
    }
    // "./" so a name starting with "-" is never read as a tar option.
    out.paths.push(`./${prefix}${p}`);
  }
  // git lists no directories; --directory names untracked ones, and the empty ones among them must travel too.
  const dirs = await exec.run("git", ["-C", dir, "ls-files", "-z", "--others", "--exclude-standard", "--directory"]);
  // A collapsed untracked dir ("a/") may hold empty dirs deeper down; those git does not ignore travel too.
  const empty: string[] = [];
  for (const d of dirs.stdout.split("\0")) if (d.endsWith("/")) _emptyDirsUnder(dir, d.slice(0, -1), empty);
  if (empty.length) {
    const ign = await exec.run("git", ["-C", dir, "check-ignore", "-z", "--stdin"], { input: empty.map((e) => e + "/").join("\0") + "\0", check: false });
    const ignored = new Set(ign.stdout.split("\0").filter(Boolean).map((e) => e.replace(/\/$/, "")));
    for (const e of empty) if (!ignored.has(e)) out.paths.push(`./${prefix}${e}`);
  }
}

/**
 * A gitlink at `rel`: an uninitialized submodule is its empty dir (it stays
 * uninitialized); an initialized one sends its files, its `.git` file and
 * (with the superproject's .git) its git dir under .git/modules.
 */
async function _submodule(exec: Exec, out: WorkspaceFiles, rel: string): Promise<void> {
  const abs = join(out.root, rel);
  const dotGit = lstatTypeSync(join(abs, ".git"));
  if (!dotGit) {
    // uninitialized: the dir is empty, so tar's recursion into it sends nothing more
    out.paths.push(`./${rel}`);
    return;
  }
  if (dotGit !== "file") {
    throw new BangerError("E_BAD_REQUEST", `submodule ${rel} keeps its git dir inside its work tree: run \`git submodule absorbgitdirs\` in ${out.root} first`);
  }
  const gitDir = (await exec.run("git", ["-C", abs, "rev-parse", "--absolute-git-dir"])).stdout.trim();
  const modules = join(out.root, ".git", "modules") + "/";
  if (!gitDir.startsWith(modules)) throw new BangerError("E_BAD_REQUEST", `submodule ${rel}: its git dir ${gitDir} is not under ${modules}`);
  const head = await checkRepoState(exec, abs, `submodule ${rel}`);
  out.submodules.push({ path: `./${rel}`, gitDir: `./${gitDir.slice(out.root.length + 1)}`, head });
  out.paths.push(`./${rel}/.git`);
  await _collect(exec, out, `${rel}/`);
}

/** Collect `rel` and the dirs below it that hold nothing at all (symlinks are not followed). */
function _emptyDirsUnder(root: string, rel: string, out: string[]): void {
  const entries = readDirSync(join(root, rel));
  if (!entries) return;
  if (entries.length === 0) out.push(rel);
  for (const e of entries) if (e.type === "dir") _emptyDirsUnder(root, `${rel}/${e.name}`, out);
}

/** Key names that hold a secret whatever their section (`github.token`, `gitlab.password`, `x.apiKey`). */
const _SECRET_KEY = /token|passw|secret|apikey|api-key|credential/i;
/** `SCHEME://userinfo@` anywhere in a value: the userinfo goes. */
const _URL_USERINFO = /([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@\s"]*@/g;

/** A URL with any `user:pass@` / `token@` userinfo removed; scp-like `git@host:x` is left alone. */
export function stripUrlCredentials(url: string): string {
  return url.replace(/^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)[^/@]*@/, "$1");
}

/**
 * .git/config without credentials: `[credential]` / `[credential "…"]`
 * sections dropped, every `extraheader` (http.extraHeader,
 * http.<url>.extraHeader) dropped, and every key whose name says it holds a
 * secret (`github.token`, `*.password`, …); userinfo stripped from URLs in
 * any value (`url`, `pushurl`, `http.proxy`, …) and from `[url "…"]` /
 * `[http "…"]` subsection names.
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
      if (key === "extraheader" || _SECRET_KEY.test(key)) {
        skippingContinuation = /\\\s*$/.test(line);
        continue;
      }
      // a URL with userinfo in any value: url, pushurl, insteadOf, http.proxy, remote.<name>.proxy, …
      out.push(`${kv[1]}${kv[2]}${kv[3]}${kv[4]!.replace(_URL_USERINFO, "$1")}`);
      continue;
    }
    out.push(line);
  }
  return out.join("\n");
}

/** The host's tar (src/host/tar.ts): workspace code streams through it, tests pass their own. */
export { createTarRunner, type TarRunner, type TarStream } from "../host/tar.ts";

/** A file the second archive of a push carries instead of the host's (a sanitized config, an export base). */
export interface GitExtra {
  /** "./.git/config", "./.git/modules/x/BANGER_BASE", … */
  path: string;
  content: string;
}

/** The sanitized config and export base of the superproject and of each submodule's git dir. */
export async function gitExtras(files: WorkspaceFiles, readText: (path: string) => Promise<string | null>): Promise<GitExtra[]> {
  const out: GitExtra[] = [];
  for (const { gitDir, head } of [{ gitDir: "./.git", head: files.head }, ...files.submodules]) {
    out.push({ path: `${gitDir}/config`, content: sanitizeGitConfig((await readText(join(files.root, gitDir, "config"))) ?? "") });
    out.push({ path: `${gitDir}/BANGER_BASE`, content: head ? head + "\n" : "" });
  }
  return out;
}

/**
 * The whole push stream: the repo's files and .git (without its configs), then
 * a second archive holding the sanitized .git/config and .git/BANGER_BASE
 * (the commit exports are relative to), and the same for each submodule's
 * git dir. The guest reads both with `tar -i`.
 */
export async function* workspaceTar(tar: TarRunner, files: WorkspaceFiles, extras: GitExtra[], fs: Pick<FS, "mkdtemp" | "mkdirp" | "writeFile" | "rmrf"> = createFS()): TarStream {
  yield* tar.create(files.root, files.paths, gitExcludes(files));
  const dir = await fs.mkdtemp(join(tmpdir(), "banger-ws-"));
  try {
    for (const e of extras) {
      const abs = join(dir, e.path);
      await fs.mkdirp(abs.slice(0, abs.lastIndexOf("/")), 0o755);
      await fs.writeFile(abs, e.content, 0o644);
    }
    yield* tar.create(dir, extras.map((e) => e.path), []);
  } finally {
    await fs.rmrf(dir);
  }
}
