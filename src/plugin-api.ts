/**
 * The public API for plugin authors. A plugin file may also skip this import
 * and `export default { name, setup(ctx) { … } }`: definePlugin is an
 * identity function that only adds types.
 */
export { definePlugin } from "./core/plugin.ts";
export type { BangerPlugin, PluginContext, Logger, BangerPaths, PluginStoreView, GuestConnector } from "./core/plugin.ts";
export type { HookMap, HookName, HookHandler, HookOptions, CloneNet } from "./core/hooks.ts";
/** A storage or network provider a VM chooses by name (`spec.storage`, `spec.net`): `ctx.registerStorage` / `ctx.registerNet`. */
export type { StorageProvider, NetProvider, NetPorts, ProviderHooks, VMHookName } from "./core/providers.ts";
/** One multi-step request as hooks see it: `op.defer(label, undo)` right after acquiring something. */
export type { Operation, Undo, ProgressSink } from "./core/operation.ts";
export type { VMRecord, VMRuntime, VMSpec, VMHandles, VMState, ImageRecord, GuestSession, PublishedPort, SnapshotRecord } from "./shared/model.ts";
export { mayBeFromOci } from "./shared/model.ts";
export type { VMMDriver, BootConfig, LaunchOptions, LaunchResult, PreparedSave, SaveOptions, SaveResult } from "./vmm/driver.ts";
export type { Host, Exec, ExecResult, ExecOptions, FileLocks, Procs, ProcInfo, Clock, FS, FifoEnd, GuestSSH, GuestSignal, ExecStreamOptions, SSHTarget, SSHDialer } from "./host/types.ts";
export type { LeaseStore, Lease } from "./shared/leases.ts";
export { BangerError } from "./shared/errors.ts";
/** An image built on a base (`banger image build --file banger.image.ts`): `export default defineImage({ name, from, packages, run, copy, env, size })`. */
export { defineImage, sizeBytes, type ImageRecipe, type ImageCopy, type CheckedRecipe } from "./shared/image-recipe.ts";
export { renderScript, shellQuote } from "./shared/quote.ts";
/** Where a VM keeps its files (disks, keys, sockets, logs), derived from VMRuntime.vmDir. */
export { vmPaths } from "./shared/paths.ts";
/** Name a temp file next to its target the way the daemon's startup sweep recognises (and removes after a crash). */
export { tempPathFor } from "./shared/temps.ts";
/** true when a path exists (any file type); the last bytes of a file as text (a serial console's end). */
export { fileExists, fileTail } from "./host/fs.ts";
/** This process's effective uid and CAP_NET_ADMIN (/proc/self/status): what a plugin checks before work that needs them. */
export { readPrivileges, type Privileges } from "./host/privileges.ts";
/** Tool runs that stop when a request is cancelled (an image build's steps). */
export { execStoppedBy } from "./host/exec-stop.ts";
/** Where and how to reach a VM's SSH server, with its pinned host key: what the daemon's pool dials. */
export { sshTargetFor } from "./host/ssh-target.ts";
/** GuestSSH's runScript and upload over another connection's exec. */
export { runScriptOver, uploadOver } from "./host/guest-exec.ts";
/** A sparse ext4 work disk (truncate + mkfs.ext4), for storage plugins. */
export { makeWorkDisk } from "./host/disks.ts";
/** For VMM driver plugins: a pid + start-time guarded view of the VM process (kill only what is still ours). */
export { guardedProcesses, type ProcTarget } from "./vmm/guarded-process.ts";
/** The process at a pid only while its start time is still the recorded one (a reused pid is a stranger). */
export { sameProcess } from "./host/procs.ts";
/** Crash fault injection for tests (BANGER_FAULT names the step where the daemon SIGKILLs itself); a no-op in normal use. */
export { faultPoint } from "./host/faults.ts";
/** For VMM driver plugins: refuse missing boot files up front; join several initrds into the one a VMM takes. */
export { requireBootFiles, joinInitrds } from "./vmm/boot-files.ts";
/** For VMM driver plugins: is KVM really usable here (not missing, openable, not kvm_pvm)? */
export { kvmUsable, type KvmProbe } from "./vmm/kvm.ts";
/** HTTP/1.1 over a unix socket with time-bounded requests (a VMM's API socket). */
export { createUnixHttp, type UnixHttp } from "./host/unix-http.ts";
/** The environment variables banger reads (src/host/config.ts is the list): `environ()` as an `env` parameter's default, `configFrom(env)` to read one. */
export { environ, configFrom, type Env, type BangerConfig } from "./host/config.ts";
/** A gzip'd newc cpio archive (initramfs pieces). */
export { writeCpioGz, type CpioEntry } from "./shared/cpio.ts";
/** A QMP client for a QEMU VM's API socket (VMRuntime.apiSockPath): one command, or an HMP command line through `human-monitor-command`. */
export { QmpClient, QmpError, qmpExecute, qmpHuman } from "./host/qmp.ts";
/** Egress policies (`--egress`): parse, print and decide, the same reading the daemon and every enforcer use. */
export { parseEgress, parseEgressEntry, formatEgress, nameAllowed, addressVerdict, addressListed, isSpecialAddress, ipv4ToInt, EGRESS_LOG_FILE, type EgressPolicy, type EgressRule, type EgressDenial } from "./shared/egress.ts";
/** An A lookup on the host (BANGER_EGRESS_DNS or resolv.conf): what egress enforcers resolve allowed names with. */
export { createResolveA, type ResolveA, type Resolved } from "./host/dns.ts";
/** A VM's egress gate: HTTP proxy (CONNECT + SNI check, plain HTTP by Host) and DNS-over-TCP resolver on unix sockets, enforcing a policy swapped in place. */
export { EgressGate, serveTransparent, type GateOptions, type OriginalDst } from "./host/egress-gate.ts";
/** A DNS server (UDP and TCP) on one address whose answers a callback gives, told who asks (net-tap's bridge resolver). */
export { serveDns, type DnsServer, type DnsAnswerer } from "./host/dns-server.ts";
/** DNS messages: read a question, build an answer (REFUSED for a stranger). */
export { parseQuery, buildAnswer, formErr, RCODE_REFUSED } from "./shared/dns-wire.ts";
