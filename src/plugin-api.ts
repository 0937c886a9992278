/**
 * The public API for plugin authors. A plugin file may also skip this import
 * and `export default { name, setup(ctx) { … } }`: definePlugin is an
 * identity function that only adds types.
 */
export { definePlugin } from "./core/plugin.ts";
export type { BangerPlugin, PluginContext, Logger, BangerPaths, PluginStoreView } from "./core/plugin.ts";
export type { HookMap, HookName, HookHandler, HookOptions } from "./core/hooks.ts";
/** One multi-step request as hooks see it: `op.defer(label, undo)` right after acquiring something. */
export type { Operation, Undo, ProgressSink } from "./core/operation.ts";
export type { VMRecord, VMRuntime, VMSpec, VMHandles, VMState, ImageRecord, GuestSession } from "./core/model.ts";
export type { VMMDriver, BootConfig, LaunchResult } from "./vmm/driver.ts";
export type { Host, Exec, ExecResult, ExecOptions, FileLocks, Procs, ProcInfo, Clock, FS, GuestSSH, SSHTarget, SSHDialer } from "./host/types.ts";
export type { LeaseStore, Lease } from "./store/leases.ts";
export { BangerError } from "./core/errors.ts";
export { renderScript } from "./sessions/quote.ts";
/**
 * Record a VM's handles in VMDir/handles.json now (atomically). For a plugin
 * that acquires kernel state in vm:start:before, so a crash before the VMM
 * launches still leaves a file reconcile can tear down from.
 */
export { writeHandlesFile } from "./handles/file.ts";
/** Where a VM keeps its files (disks, keys, sockets, logs), derived from VMRuntime.vmDir. */
export { vmPaths } from "./core/paths.ts";
/** true when a path exists (any file type). */
export { fileExists } from "./host/fs.ts";
