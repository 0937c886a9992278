// What travels between the CLI and the daemon: the shapes both sides agree on.
import type { PublishedPort, VMRecord } from "./model.ts";

/** What an error envelope carries: `{ code, message }`, plus `undoFailures` when undoing a failed operation failed too. */
export interface ErrorBody {
  code: string;
  message: string;
  undoFailures?: string[];
}

/** One line of an NDJSON stream: progress/output events, then one final result, exit or error. */
export type StreamEvent =
  | { type: "progress"; message: string }
  | { type: "stdout" | "stderr"; data: string /* base64 */; offset?: number /* byte offset just past this chunk */ }
  | { type: "result"; data: unknown }
  | { type: "exit"; code: number }
  | { type: "file"; event: FileEvent }
  /** `vm exec`'s command runs: the id its signals go to (vmExecSignal). */
  | { type: "exec"; id: string }
  | { type: "error"; error: ErrorBody };

/** A plugin as `banger plugin list` shows it. */
export interface LoadedPlugin {
  name: string;
  description: string;
  source: string;
  hooks: string[];
  drivers: string[];
  /** Storage providers it registered (`--storage NAME`). */
  storage: string[];
  /** Network providers it registered (`--net NAME`). */
  nets: string[];
}

export interface Workspace {
  vm: string;
  sourcePath: string;
  guestPath: string;
  readOnly: boolean;
  /** Work-tree entries sent (.git not counted). */
  files: number;
  /** Bytes of tar streamed to the guest. */
  bytes: number;
  /** The commit exports are relative to ("" for a repo without commits). */
  base: string;
  /** "delta": only what changed since the last prepare of this VM and path went (the rest was hard-linked in the guest). */
  mode: "full" | "delta";
  /** Entries sent (work tree and .git files for a delta; work-tree entries for a full copy). */
  sent: number;
}

export interface FetchResult {
  vm: string;
  sourcePath: string;
  guestPath: string;
  /** Refs updated, refs/banger/<vm>/<branch> → commit; `repo` names the submodule (its path) whose repo got the ref, absent for the superproject. */
  refs: { ref: string; commit: string; repo?: string }[];
}

/** Public view of a VM: its durable record plus liveness. */
export type VMView = VMRecord & {
  alive: boolean;
  pid: number;
  /** `vm list`/`vm show`: requests that count as use (exec, ssh, sessions, files…) open on it now; its idle clock starts when the last ends. */
  requestsOpen?: number;
  /** Recorded running, but its VMM stopped the guest on its own (QEMU on a failed disk write, e.g. a full host disk): why. `banger vm resume` lets it run on once the cause is gone. */
  halted?: string;
};

/** GET /v1/health. */
export interface Health {
  version: string;
  pid: number;
  home: string;
  startedAt: string;
  reconcile: unknown;
  /** Requests the daemon received before this one. */
  requestsReceived?: number;
}

/** Where and how to reach a running VM's sshd (an interactive `vm ssh`). */
export interface SshInfo {
  host: string;
  port: number;
  user: string;
  privateKey: string;
  hostKey: string;
}

/** A VM's published ports (`vm port ls`); `removed`/`added` name what the request changed. */
export interface PortsView {
  vm: string;
  alive: boolean;
  ports: PublishedPort[];
  added?: PublishedPort;
  removed?: PublishedPort[];
}

/** One sample of a running VM's use (`vm stats`): the VMM process seen from the host, the rest read in the guest. */
export interface VMStats {
  vm: string;
  /** The VMM process's CPU time since the previous sample, in % of one host CPU (100 = one core busy). */
  cpuPercent: number;
  /** Over how long cpuPercent was measured. */
  cpuWindowMs: number;
  vcpus: number;
  /** Guest memory in use (MemTotal − MemAvailable) and its total, bytes. */
  memUsedBytes: number;
  memTotalBytes: number;
  /** The VMM process's resident set on the host, bytes. */
  vmmRssBytes: number;
  /** The guest's root filesystem. */
  diskUsedBytes: number;
  diskSizeBytes: number;
  uptimeSeconds: number;
  /** When this sample was taken (ISO time). */
  at: string;
}

/** A path in a VM as the files routes describe it (lstat: a symlink is a symlink, with its target). */
export interface FileInfo {
  name: string;
  /** Absolute guest path. */
  path: string;
  type: "file" | "dir" | "symlink" | "other";
  size: number;
  /** Permission bits (mode & 0o7777). */
  mode: number;
  /** Modification time, ISO 8601. */
  mtime: string;
  /** Where a symlink points (as written in the link). */
  target?: string;
}

/** A change under a watched guest dir: `ready` once the watch is set, `gone` when the dir itself went away. */
export interface FileEvent {
  op: "ready" | "create" | "write" | "remove" | "gone";
  type: FileInfo["type"];
  path: string;
}
