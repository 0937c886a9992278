/**
 * The public API for plugin authors. A plugin file may also skip this import
 * and `export default { name, setup(ctx) { … } }`: definePlugin is an
 * identity function that only adds types.
 */
export { definePlugin } from "./core/plugin.ts";
export type { BangerPlugin, PluginContext, Logger, BangerPaths, PluginStoreView } from "./core/plugin.ts";
export type { HookMap, HookName, HookHandler, HookOptions, Undo, ProgressSink } from "./core/hooks.ts";
export type { VMRecord, VMRuntime, VMSpec, VMHandles, VMState, ImageRecord, GuestSession } from "./core/model.ts";
export type { VMMDriver, BootConfig, LaunchResult } from "./vmm/driver.ts";
export type { Host, Exec, ExecResult, ExecOptions, Procs, ProcInfo, Clock, FS, GuestSSH, SSHTarget, SSHDialer } from "./host/types.ts";
export type { LeaseStore, Lease } from "./store/leases.ts";
export { BangerError } from "./core/errors.ts";
/** Where a VM keeps its files (disks, keys, sockets, logs), derived from VMRuntime.vmDir. */
export { vmPaths } from "./core/paths.ts";
/** true when a path exists (any file type). */
export { fileExists } from "./host/fs.ts";
