import type { FetchResult, Workspace } from "../shared/api.ts";
import { createHash, randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError, errorMessage } from "../shared/errors.ts";
import type { HookEngine } from "../core/hooks.ts";
import { runOperation, type Operation } from "../core/operation.ts";
import type { Logger } from "../core/plugin.ts";
import { faultPoint } from "../host/faults.ts";
import { createFS } from "../host/fs.ts";
import type { VMRecord } from "../shared/model.ts";
import type { Exec, FS, GuestSSH, Host } from "../host/types.ts";
import { planDelta, snapshot, type Manifest } from "./manifest.ts";
import {
  ActivateScript,
  DEFAULT_GUEST_PATH,
  DISK_FULL_EXIT,
  DeltaStageCommand,
  ExtractIntoStageCommand,
  STALE_EXIT,
  DiffScript,
  ExportScript,
  GUEST_WORK_EXIT,
  FinalizeScript,
  NOTHING_NEW_EXIT,
  NOT_A_REPO_EXIT,
  NOT_A_WORKSPACE_EXIT,
  NO_GIT_EXIT,
  RollbackScript,
  StageCommand,
  checkGuestPath,
  stagePaths,
} from "./scripts.ts";
import { createTarRunner, gitExcludes, gitExtras, listWorkspaceFiles, repoRoot, resentGitFiles, workspaceTar, type TarRunner, type TarStream, type WorkspaceFiles } from "./tar.ts";

export interface WorkspaceDeps {
  /** Handed to workspace:prepare hooks on the operation. */
  host: Host;
  /** Where undo failures of a prepare are logged. */
  log: Logger;
  /** The guest's (pooled) SSH connection. */
  dial(vm: VMRecord): Promise<GuestSSH>;
  exec: Exec;
  hooks: Pick<HookEngine, "run">;
  /** Host tar; the real one unless a test passes its own. */
  tar?: TarRunner;
  /** Where manifests of what was sent are kept (VMDir/workspaces/); without it every prepare is a full copy. */
  fs?: Pick<FS, "readText" | "writeAtomic" | "mkdirp" | "rmrf">;
  /** Stage-dir suffix; random unless a test fixes it. */
  token?: () => string;
}

export interface PrepareParams {
  vm: VMRecord;
  /** Absolute host path inside a git work tree; its top directory is what gets sent. */
  sourcePath: string;
  guestPath?: string;
  readOnly?: boolean;
  /** Replace an earlier workspace even when it holds work the host would not get back (commits, changed files). */
  force?: boolean;
  /** Told what is happening, at most about once a second while bytes flow. */
  progress?: (message: string) => void;
  /** Aborted when whoever asked went away. */
  signal?: AbortSignal;
}

/** What a prepare did. */
export type { FetchResult, Workspace };

export interface ExportParams {
  vm: VMRecord;
  guestPath?: string;
}

/** What `export --fetch` did to the source repo. */

const GC_EVERY_BYTES = 8 * 1024 * 1024;

function _text(chunks: Uint8Array[]): string {
  return Buffer.concat(chunks).toString("utf8").trim();
}

/** A failing tar can print a line per entry: the error stays one line, the first, with a count of the rest. */
function _firstLine(chunks: Uint8Array[]): string {
  const lines = _text(chunks).split("\n").filter((l) => l.trim() !== "");
  return lines.length > 1 ? `${lines[0]} (and ${lines.length - 1} more lines)` : (lines[0] ?? "");
}

/** What tar, mkdir or cp print when the guest filesystem is out of space or quota. */
const DISK_FULL_TEXT = /No space left on device|Disk quota exceeded/;

/** Remember the first error of a stream we hand to SSH (its pump swallows errors and just ends stdin), and count its bytes. */
async function* _watch(src: TarStream, seen: { error?: unknown; bytes: number }, progress?: (m: string) => void): TarStream {
  let last = performance.now();
  let collected = 0;
  try {
    for await (const c of src) {
      seen.bytes += c.length;
      // The stream is never held (SSH's channel window bounds what is in flight), but every chunk leaves
      // packet and cipher buffers that Bun frees lazily: without this a 100 MB file raised the daemon's
      // peak RSS by 85-130 MB; with a full collection every 8 MiB, by 37 MB (test/integration/workspace.test.ts).
      if (seen.bytes - collected >= GC_EVERY_BYTES) {
        collected = seen.bytes;
        Bun.gc(true);
      }
      if (progress && performance.now() - last > 1000) {
        last = performance.now();
        progress(`sent ${(seen.bytes / 1048576).toFixed(1)} MiB`);
      }
      yield c;
    }
  } catch (e) {
    seen.error = e;
    throw e;
  }
}

type _Seen = { error?: unknown; bytes: number };

/** One prepare's state, shared by its steps. */
interface _PrepareJob {
  p: PrepareParams;
  guestPath: string;
  readOnly: boolean;
  files: WorkspaceFiles;
  manifestFile: string | null;
  prev: Manifest | null;
  now: Manifest["entries"];
  sentToken: string;
  guest: GuestSSH;
  stage: string;
  old: string;
  /** "vm <name>: workspace <path>", the start of every error. */
  where: string;
  started: number;
  seen: _Seen;
  stream(f: WorkspaceFiles): TarStream;
  mode: "full" | "delta";
  sent: number;
}

/** Why copying into the guest failed, from the packer's error, the guest's exit code and its stderr. */
function _copyFailed(job: _PrepareJob, code: number, err: Uint8Array[]): never {
  const { seen, files, p, where, stage } = job;
  if (seen.error) throw new BangerError("E_INTERNAL", `packing ${files.root} failed: ${errorMessage(seen.error)}`, { cause: seen.error });
  if (code === NOT_A_WORKSPACE_EXIT) throw new BangerError("E_CONFLICT", `vm ${p.vm.name}: ${_text(err)}`);
  if (code === GUEST_WORK_EXIT) {
    throw new BangerError("E_CONFLICT", `${where} holds work the host does not have: ${_firstLine(err)}. \`banger workspace export ${p.vm.name}\` brings it back; prepare with --force to replace it`);
  }
  if (code === DISK_FULL_EXIT || DISK_FULL_TEXT.test(_text(err))) {
    throw new BangerError("E_STATE", `${where}: the guest's disk is full (no space left on device under ${stage.slice(0, stage.lastIndexOf("/")) || "/"}): nothing was changed; free space in the guest or pick another --guest-path`);
  }
  throw new BangerError("E_STATE", `${where}: copying into the guest failed (exit ${code})${err.length ? `: ${_firstLine(err)}` : ""}`);
}

/** PrepareVMWorkspace and its ways back (a diff, a patch series, a fetch), over the guest's pooled SSH connection. */
export class WorkspaceEngine {
  private readonly tar: TarRunner;
  private readonly token: () => string;
  constructor(private readonly d: WorkspaceDeps) {
    this.tar = d.tar ?? createTarRunner();
    this.token = d.token ?? (() => randomBytes(6).toString("hex"));
  }

  /**
   * Stream the repo (files git would keep + .git with a sanitized config)
   * into a stage dir next to the guest path, swap it into place, mark it
   * safe, run `workspace:prepare` hooks, then freeze it when read-only. Any
   * failure puts the previous tree (or nothing) back.
   */
  async prepare(p: PrepareParams): Promise<Workspace> {
    const job = await this._plan(p);
    await runOperation({ name: `workspace prepare ${p.vm.name}:${job.guestPath}`, vm: p.vm, host: this.d.host, log: this.d.log, progress: p.progress, signal: p.signal }, async (op) => {
      // the guest may hold a mix after a failure: the next prepare must send everything
      if (job.manifestFile && job.prev) op.defer("workspace manifest", () => this.d.fs!.rmrf(job.manifestFile!));
      // Before the first byte goes: a failed or cut stream leaves a stage dir behind.
      op.defer("workspace stage", () => _must(job.guest, RollbackScript(job.guestPath, job.stage, job.old, false)));
      await faultPoint("workspace:before-extract");
      if (!(await this._sendDelta(job))) await this._sendFull(job);
      await faultPoint("workspace:after-extract");
      await this._activate(job, op);
      await this._finalize(job, op);
    });
    await this._saveManifest(job);
    const { files, guestPath, readOnly, seen, mode, sent } = job;
    return { vm: p.vm.name, sourcePath: files.root, guestPath, readOnly, files: files.paths.length - 1, bytes: seen.bytes, base: files.head, mode, sent };
  }

  /** Everything a prepare needs to know before it touches the guest: what to send, what the guest last got, where to stage. */
  private async _plan(p: PrepareParams): Promise<_PrepareJob> {
    const guestPath = checkGuestPath(p.guestPath ?? DEFAULT_GUEST_PATH);
    const readOnly = !!p.readOnly;
    if (!p.sourcePath.startsWith("/")) throw new BangerError("E_BAD_REQUEST", `source path must be absolute, got ${JSON.stringify(p.sourcePath)}`);
    const files = await listWorkspaceFiles(this.d.exec, p.sourcePath);
    const extras = await gitExtras(files, (path) => createFS().readText(path));
    const manifestFile = this.d.fs && p.vm.runtime?.vmDir ? join(p.vm.runtime.vmDir, "workspaces", `${createHash("sha256").update(guestPath).digest("hex").slice(0, 16)}.json`) : null;
    const prev = manifestFile ? _parseManifest(await this.d.fs!.readText(manifestFile)) : null;
    const now = snapshot(files, gitExcludes(files));
    const sentToken = randomBytes(12).toString("hex");
    const guest = await this.d.dial(p.vm);
    const { stage, old } = stagePaths(guestPath, this.token());
    const seen: _Seen = { bytes: 0 };
    return {
      p,
      guestPath,
      readOnly,
      files,
      manifestFile,
      prev,
      now,
      sentToken,
      guest,
      stage,
      old,
      where: `vm ${p.vm.name}: workspace ${guestPath}`,
      started: performance.now(),
      seen,
      stream: (f: WorkspaceFiles) => _watch(workspaceTar(this.tar, f, extras), seen, p.progress),
      mode: "full",
      sent: files.paths.length - 1,
    };
  }

  /** Only what changed since the last prepare, on a copy of the live tree; false when a full send is needed instead. */
  private async _sendDelta(job: _PrepareJob): Promise<boolean> {
    const { prev, guestPath, files, guest, stage, old } = job;
    const plan = prev && prev.guestPath === guestPath && !prev.readOnly ? planDelta(files.root, prev.entries, job.now) : null;
    if (!plan) return false;
    // everything that must not be a link into the live tree goes first; the tar brings the new versions
    const drop = [...plan.changed, ...plan.removed, ...resentGitFiles(files)];
    const err: Uint8Array[] = [];
    // the copies take the request's signal (Ctrl-C stops them, and the stage goes with the undo); the swap does not
    const code = await guest.exec(DeltaStageCommand(guestPath, stage, prev!.token), { stdin: drop.join("\0") + "\0", onStderr: (c) => err.push(c.slice()), signal: job.p.signal });
    if (code === STALE_EXIT) {
      await _must(guest, RollbackScript(guestPath, stage, old, false)); // a half-made link copy
      return false;
    }
    if (code !== 0) _copyFailed(job, code, err);
    const err2: Uint8Array[] = [];
    const code2 = await guest.exec(ExtractIntoStageCommand(stage), { stdin: job.stream({ ...files, paths: plan.changed }), onStderr: (c) => err2.push(c.slice()), signal: job.p.signal });
    if (job.seen.error || code2 !== 0) _copyFailed(job, code2, err2);
    job.mode = "delta";
    job.sent = plan.changed.length;
    return true;
  }

  private async _sendFull(job: _PrepareJob): Promise<void> {
    const err: Uint8Array[] = [];
    const code = await job.guest.exec(StageCommand(job.guestPath, job.stage, !!job.p.force), { stdin: job.stream(job.files), onStderr: (c) => err.push(c.slice()), signal: job.p.signal });
    if (job.seen.error || code !== 0) _copyFailed(job, code, err);
  }

  /** Swap the stage dir into place (the old tree kept aside until finalize) and mark it safe for git. */
  private async _activate(job: _PrepareJob, op: Operation): Promise<void> {
    const { guest, guestPath, stage, old, where } = job;
    // Pushed before it runs: an activation cut halfway is undone from whatever state it left.
    op.defer("workspace swap", () => _must(guest, RollbackScript(guestPath, stage, old, true)));
    const act = await guest.runScript(ActivateScript(guestPath, stage, old));
    if (act.exitCode !== 0) {
      throw new BangerError("E_STATE", `${where}: ${act.exitCode === NO_GIT_EXIT ? "git is not installed in the guest" : act.stderr.trim() || `swapping into place failed (exit ${act.exitCode})`}`);
    }
  }

  /** The workspace:prepare hooks; once they succeed, drop the old tree, record the token and freeze it when read-only. */
  private async _finalize(job: _PrepareJob, op: Operation): Promise<void> {
    const { p, files, guest, guestPath, readOnly, where } = job;
    if (performance.now() - job.started > 1000) p.progress?.(`copied ${files.paths.length - 1} files (${(job.seen.bytes / 1048576).toFixed(1)} MiB); running workspace:prepare hooks`);
    await this.d.hooks.run("workspace:prepare", { vm: p.vm, sourcePath: files.root, guestPath, readOnly, guest, op });
    const fin = await guest.runScript(FinalizeScript(guestPath, job.old, readOnly, job.sentToken));
    if (fin.exitCode !== 0) throw new BangerError("E_STATE", `${where}: finishing failed: ${fin.stderr.trim() || `exit ${fin.exitCode}`}`);
  }

  /** What the guest now holds, so the next prepare can send only what changed. */
  private async _saveManifest(job: _PrepareJob): Promise<void> {
    if (!job.manifestFile) return;
    const m: Manifest = { guestPath: job.guestPath, token: job.sentToken, readOnly: job.readOnly, entries: job.now };
    await this.d.fs!.mkdirp(join(job.p.vm.runtime.vmDir, "workspaces"));
    await this.d.fs!.writeAtomic(job.manifestFile, JSON.stringify(m));
  }

  /** `git diff --binary` of the guest repo against its HEAD, untracked files included: `git apply` on the host reproduces it. */
  async diff(vm: VMRecord, guestPathIn?: string): Promise<Uint8Array> {
    const guestPath = checkGuestPath(guestPathIn || DEFAULT_GUEST_PATH);
    return this._capture(vm, guestPath, DiffScript(guestPath), "diff");
  }

  /**
   * The guest's new commits and uncommitted work since the prepare, as a
   * `git format-patch --binary` series (`git am` applies it). Empty when
   * there is nothing new.
   */
  async exportPatch(p: ExportParams): Promise<Uint8Array> {
    const guestPath = checkGuestPath(p.guestPath || DEFAULT_GUEST_PATH);
    try {
      return await this._capture(p.vm, guestPath, ExportScript(guestPath, "patch"), "export");
    } catch (e) {
      if (e instanceof _NothingNew) return new Uint8Array(0);
      throw e;
    }
  }

  /**
   * Fetch the guest's branch (uncommitted work as one more commit on top)
   * into refs/banger/<vm>/<branch> of the source repo, through a git bundle
   * streamed over SSH. Only that ref namespace changes: no working tree,
   * index or branch of the user's is touched.
   */
  async exportFetch(p: ExportParams & { sourcePath: string }): Promise<FetchResult> {
    const guestPath = checkGuestPath(p.guestPath || DEFAULT_GUEST_PATH);
    if (!p.sourcePath.startsWith("/")) throw new BangerError("E_BAD_REQUEST", `source path must be absolute, got ${JSON.stringify(p.sourcePath)}`);
    const root = await repoRoot(this.d.exec, p.sourcePath);
    const check = await this.d.exec.run("git", ["check-ref-format", `refs/banger/${p.vm.name}/x`], { check: false });
    if (check.exitCode !== 0) throw new BangerError("E_BAD_REQUEST", `vm name ${JSON.stringify(p.vm.name)} cannot be part of a git ref`);
    const refs = await this._fetchRepo(p.vm, guestPath, root, false);
    // each submodule checked out on the host (nested ones too) gets the guest's work in its own repo, in the same ref namespace
    const subs = await this.d.exec.run("git", ["-C", root, "submodule", "--quiet", "foreach", "--recursive", 'printf "%s\\0" "$displaypath"']);
    for (const sub of subs.stdout.split("\0").filter(Boolean)) {
      for (const r of await this._fetchRepo(p.vm, `${guestPath}/${sub}`, join(root, sub), true)) refs.push({ ...r, repo: sub });
    }
    return { vm: p.vm.name, sourcePath: root, guestPath, refs };
  }

  /** The guest repo at guestDir's new work, fetched into refs/banger/<vm>/ of the host repo; [] when there is none (or, for a submodule, no repo there in the guest). */
  private async _fetchRepo(vm: VMRecord, guestDir: string, hostRepo: string, optional: boolean): Promise<FetchResult["refs"]> {
    let bundle: Uint8Array;
    try {
      bundle = await this._capture(vm, guestDir, ExportScript(guestDir, "bundle", { topOnly: optional }), "export");
    } catch (e) {
      if (e instanceof _NothingNew) return [];
      if (optional && e instanceof BangerError && e.code === "E_NOT_FOUND") return []; // left uninitialized in the guest
      throw e;
    }
    // git fetch wants a file; it lives only as long as the fetch, in a private temp dir.
    // --no-recurse-submodules: a moved gitlink would make git fetch in the submodule from its remote; banger brings each one's work itself
    const fs = createFS();
    const dir = await fs.mkdtemp(join(tmpdir(), "banger-bundle-"));
    try {
      const file = join(dir, "guest.bundle");
      await fs.writeFile(file, bundle);
      const prefix = `refs/banger/${vm.name}/`;
      const r = await this.d.exec.run("git", ["-C", hostRepo, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", file, `+refs/heads/*:${prefix}*`], { check: false });
      if (r.exitCode !== 0) {
        throw new BangerError("E_STATE", `fetching ${vm.name}:${guestDir} into ${hostRepo} failed: ${r.stderr.trim().split("\n").slice(-2).join("; ")}`);
      }
      const heads = await this.d.exec.run("git", ["bundle", "list-heads", file], { cwd: hostRepo });
      return heads.stdout
        .split("\n")
        .map((l) => l.trim().split(" "))
        .filter(([c, ref]) => c && ref?.startsWith("refs/heads/"))
        .map(([commit, ref]) => ({ ref: prefix + ref!.slice("refs/heads/".length), commit: commit! }));
    } finally {
      await fs.rmrf(dir);
    }
  }

  /** Run a read-only script in the guest and return its stdout byte for byte (exec, not runScript: patches and bundles are binary). */
  private async _capture(vm: VMRecord, guestPath: string, script: string, what: string): Promise<Uint8Array> {
    const guest = await this.d.dial(vm);
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    const code = await guest.exec("bash -s", { stdin: script, onStdout: (c) => out.push(c.slice()), onStderr: (c) => err.push(c.slice()) });
    if (code === NOT_A_REPO_EXIT) throw new BangerError("E_NOT_FOUND", `vm ${vm.name}: ${_text(err) || `no git workspace at ${guestPath}`}`);
    if (code === NO_GIT_EXIT) throw new BangerError("E_STATE", `vm ${vm.name}: git is not installed in the guest`);
    if (code === NOTHING_NEW_EXIT && what === "export") throw new _NothingNew();
    if (code !== 0) throw new BangerError("E_STATE", `vm ${vm.name}: ${what} of ${guestPath} failed (exit ${code})${err.length ? `: ${_text(err)}` : ""}`);
    return new Uint8Array(Buffer.concat(out));
  }
}

/** The guest has nothing the prepared-from commit lacks. */
class _NothingNew extends Error {}

async function _must(guest: GuestSSH, script: string): Promise<void> {
  const r = await guest.runScript(script);
  if (r.exitCode !== 0) throw new Error(r.stderr.trim() || `exit ${r.exitCode}`);
}

/** The guest paths of the read-only workspaces recorded for a VM (its manifests, VMDir/workspaces/). */
export async function readOnlyWorkspaces(fs: Pick<FS, "list" | "readText">, vmDir: string): Promise<string[]> {
  const dir = join(vmDir, "workspaces");
  const out: string[] = [];
  for (const e of await fs.list(dir).catch(() => [])) {
    if (!e.name.endsWith(".json")) continue;
    const m = _parseManifest(await fs.readText(join(dir, e.name)));
    if (m?.readOnly) out.push(m.guestPath);
  }
  return out.sort();
}

function _parseManifest(text: string | null): Manifest | null {
  if (!text) return null;
  try {
    const m = JSON.parse(text) as Manifest;
    return typeof m.token === "string" && typeof m.guestPath === "string" && m.entries && typeof m.entries === "object" ? m : null;
  } catch {
    return null;
  }
}
