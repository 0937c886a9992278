import { join } from "node:path";
import { type Host, type ProcTarget, type VMRecord } from "../../src/plugin-api.ts";
import { qmpArg } from "./args.ts";

/** A snapshot's receiver qemu listens on this QMP socket in its VM's dir (see _prepareReceiver in driver.ts). */
export const RECEIVER_SOCK = "rcv.sock";
/** …and for its VM's migration stream on this one (no longer than the VM's api.sock, whose length the launch checked). */
export const RECEIVER_IN_SOCK = "rin.sock";
/** Its disk stand-ins in the VM's dir, one per -drive (sparse files the size of the VM's disks). */
export const receiverDiskName = (i: number) => `receiver-disk${i}.img`;
const _RECEIVER_DISK_RE = /^receiver-disk\d+\.img$/;

/**
 * The `-qmp` value of a receiver qemu's command line, null for any other process (the `timeout` watchdog
 * names the same argv but is not qemu): compared with qmpArg(<VM dir>/RECEIVER_SOCK) to say whose it is.
 */
export function receiverQmpArg(cmdline: readonly string[]): string | null {
  if (!(cmdline[0] ?? "").includes("qemu")) return null;
  const i = cmdline.indexOf("-qmp");
  return i >= 0 ? (cmdline[i + 1] ?? null) : null;
}

/** What reapLeftoverReceivers looks at: the store's VMs and the dir their dirs live in (dirs no row owns count too). */
export interface ReapScope<V extends Pick<VMRecord, "name" | "runtime"> = Pick<VMRecord, "name" | "runtime">> {
  vms: readonly V[];
  vmsDir: string;
}

/**
 * At daemon start: the snapshot receivers a killed daemon left, killed by
 * pid and start time, and their files in known VMs' dirs removed (the
 * startup sweep removes the dirs no row owns, whole). A receiver holds a
 * guest's RAM (a memfd) and outlives its daemon under a 600 s
 * watchdog; its snapshot is still `creating` (the receiver runs before the
 * commit), so snapshot reconcile drops it and the sweep its temp dir: nothing
 * will read what it writes. A known VM's receiver is killed only once `settle`
 * (the driver: until that VM's own state save has stopped streaming into it)
 * has returned; what it says goes in the lines. Only receivers of this home are touched: their
 * QMP socket is in a dir under `vmsDir` (other daemons, other homes, run
 * theirs). /proc is scanned only when a dir holds a receiver's socket or
 * stand-in disk, or no row owns it: a clean start costs a readdir per VM.
 */
export async function reapLeftoverReceivers<V extends Pick<VMRecord, "name" | "runtime">>(
  host: Host,
  kill: (t: ProcTarget) => Promise<void>,
  scope: ReapScope<V>,
  settle: (vm: V) => Promise<string | null> = async () => null,
): Promise<string[]> {
  const out: string[] = [];
  const known = new Map(scope.vms.map((vm) => [vm.runtime.vmDir, vm.name] as const));
  const vmByDir = new Map(scope.vms.map((vm) => [vm.runtime.vmDir, vm] as const));
  const dirs = new Map<string, string>(known);
  for (const e of await host.fs.list(scope.vmsDir)) {
    const dir = join(scope.vmsDir, e.name);
    // a leading dot is a temp (src/shared/temps.ts), never a VM's dir
    if (e.type === "dir" && !e.name.startsWith(".") && !dirs.has(dir)) dirs.set(dir, `dir ${e.name} (no vm)`);
  }
  const leftovers = new Map<string, string[]>();
  let evidence = false;
  for (const [dir] of dirs) {
    const files = (await host.fs.list(dir)).map((e) => e.name).filter((n) => n === RECEIVER_SOCK || n === RECEIVER_IN_SOCK || _RECEIVER_DISK_RE.test(n));
    if (files.length) leftovers.set(dir, files);
    evidence ||= files.length > 0 || !known.has(dir);
  }
  if (!evidence) return out;
  const byNeedle = new Map([...dirs].map(([dir, who]) => [qmpArg(join(dir, RECEIVER_SOCK)), { who, vm: vmByDir.get(dir) }] as const));
  for (const p of await host.procs.find(RECEIVER_SOCK)) {
    const arg = receiverQmpArg(p.cmdline);
    const owner = arg === null ? undefined : byNeedle.get(arg);
    // the `timeout` watchdog names the same argv; it exits with its qemu
    if (!owner) continue;
    const { who, vm } = owner;
    // its VM may still be streaming its RAM into it: killed midway, that stream would leave the guest stuck (settle)
    const settled = vm ? await settle(vm) : null;
    if (settled) out.push(`${who}: ${settled}`);
    await kill({ pid: p.pid, startTime: p.startTime });
    out.push(`${who}: killed the snapshot receiver qemu (pid ${p.pid}) a killed daemon left`);
  }
  for (const [dir, files] of leftovers) {
    const who = known.get(dir);
    if (!who) continue;
    for (const f of files) await host.fs.rmrf(join(dir, f));
    out.push(`${who}: removed the snapshot receiver's ${files.join(", ")}`);
  }
  return out;
}
