import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BangerError } from "../core/errors.ts";
import { faultPoint } from "../core/faults.ts";
import type { HookEngine } from "../core/hooks.ts";
import type { VMRecord } from "../core/model.ts";
import type { Exec, GuestSSH } from "../host/types.ts";
import { DEFAULT_GUEST_PATH, DiffScript, ExtractCommand, FinalizeScript, NOT_A_REPO_EXIT, NO_GIT_EXIT, checkGuestPath } from "./scripts.ts";
import { createTarRunner, listWorkspaceFiles, sanitizeGitConfig, workspaceTar, type TarRunner, type TarStream } from "./tar.ts";

export interface WorkspaceDeps {
  /** The guest's (pooled) SSH connection. */
  dial(vm: VMRecord): Promise<GuestSSH>;
  exec: Exec;
  hooks: Pick<HookEngine, "run">;
  /** Host tar; the real one unless a test passes its own. */
  tar?: TarRunner;
}

export interface PrepareParams {
  vm: VMRecord;
  /** Absolute host path inside a git work tree; its top directory is what gets sent. */
  sourcePath: string;
  guestPath?: string;
  readOnly?: boolean;
}

/** What a push did. */
export interface Workspace {
  vm: string;
  sourcePath: string;
  guestPath: string;
  readOnly: boolean;
  /** Work-tree files sent (.git not counted). */
  files: number;
}

function _text(chunks: Uint8Array[]): string {
  return Buffer.concat(chunks).toString("utf8").trim();
}

/** Remember the first error of a stream we hand to SSH: its pump swallows errors and just ends stdin. */
async function* _watch(src: TarStream, failed: { error?: unknown }): TarStream {
  try {
    yield* src;
  } catch (e) {
    failed.error = e;
    throw e;
  }
}

/** PrepareVMWorkspace and its way back (a patch), over one SSH connection per guest. */
export class WorkspaceEngine {
  private readonly tar: TarRunner;
  constructor(private readonly d: WorkspaceDeps) {
    this.tar = d.tar ?? createTarRunner();
  }

  /** Stream the repo (files git would keep + .git with a sanitized config) into the guest, mark it safe, freeze it when read-only. */
  async prepare(p: PrepareParams): Promise<Workspace> {
    const guestPath = checkGuestPath(p.guestPath ?? DEFAULT_GUEST_PATH);
    const readOnly = !!p.readOnly;
    if (!p.sourcePath.startsWith("/")) throw new BangerError("E_BAD_REQUEST", `source path must be absolute, got ${JSON.stringify(p.sourcePath)}`);
    const files = await listWorkspaceFiles(this.d.exec, p.sourcePath);
    const config = sanitizeGitConfig(_readConfig(files.root));
    await this.d.hooks.run("workspace:prepare", { vm: p.vm, sourcePath: files.root, guestPath, readOnly });

    const guest = await this.d.dial(p.vm);
    await faultPoint("workspace:before-extract");
    const err: Uint8Array[] = [];
    const failed: { error?: unknown } = {};
    const code = await guest.exec(ExtractCommand(guestPath), {
      stdin: _watch(workspaceTar(this.tar, files, config), failed),
      onStderr: (c) => err.push(c.slice()),
    });
    if (failed.error) throw new BangerError("E_INTERNAL", `packing ${files.root} failed: ${(failed.error as Error).message ?? failed.error}`, { cause: failed.error });
    if (code !== 0) throw new BangerError("E_STATE", `vm ${p.vm.name}: extracting into ${guestPath} failed (exit ${code})${err.length ? `: ${_text(err)}` : ""}`);

    await faultPoint("workspace:after-extract");
    const fin = await guest.runScript(FinalizeScript(guestPath, readOnly));
    if (fin.exitCode !== 0) {
      const why = fin.exitCode === NO_GIT_EXIT ? "git is not installed in the guest" : fin.stderr.trim() || `exit ${fin.exitCode}`;
      throw new BangerError("E_STATE", `vm ${p.vm.name}: finishing workspace ${guestPath} failed: ${why}`);
    }
    return { vm: p.vm.name, sourcePath: files.root, guestPath, readOnly, files: files.paths.length - 1 };
  }

  /** `git diff --binary` of the guest repo against its HEAD, untracked files included: `git apply` on the host reproduces it. */
  async diff(vm: VMRecord, guestPathIn?: string): Promise<Uint8Array> {
    const guestPath = checkGuestPath(guestPathIn || DEFAULT_GUEST_PATH);
    const guest = await this.d.dial(vm);
    const out: Uint8Array[] = [];
    const err: Uint8Array[] = [];
    // exec, not runScript: a patch may hold non-UTF-8 bytes and must come back byte for byte.
    const code = await guest.exec("bash -s", { stdin: DiffScript(guestPath), onStdout: (c) => out.push(c.slice()), onStderr: (c) => err.push(c.slice()) });
    if (code === NOT_A_REPO_EXIT) throw new BangerError("E_NOT_FOUND", `vm ${vm.name}: ${_text(err) || `no git workspace at ${guestPath}`}`);
    if (code === NO_GIT_EXIT) throw new BangerError("E_STATE", `vm ${vm.name}: git is not installed in the guest`);
    if (code !== 0) throw new BangerError("E_STATE", `vm ${vm.name}: diff of ${guestPath} failed (exit ${code})${err.length ? `: ${_text(err)}` : ""}`);
    return new Uint8Array(Buffer.concat(out));
  }
}

function _readConfig(root: string): string {
  try {
    return readFileSync(join(root, ".git", "config"), "utf8");
  } catch {
    return "";
  }
}
