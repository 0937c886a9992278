// `vm stats`: the VMM process's CPU time and RSS from the host's /proc, and
// ONE guest read (meminfo, uptime, df) over the pooled SSH connection.
import type { Engine } from "../core/engine.ts";
import type { Host } from "../host/types.ts";
import type { VMStats } from "../shared/api.ts";
import { BangerError } from "../shared/errors.ts";
import { meminfoBytes } from "../shared/meminfo.ts";
import type { VMRecord } from "../shared/model.ts";
import { renderScript } from "../shared/quote.ts";
import type { HandlersFor } from "./router.ts";
import type { SSHPool } from "./ssh-pool.ts";
import STATS_SH from "./scripts/stats.sh" with { type: "text" };

// USER_HZ and the page size are fixed by the x86-64 Linux ABI (sysconf would need a subprocess per daemon)
const CLOCK_TICKS_PER_S = 100;
const PAGE_BYTES = 4096;
/** How long a guest's df result stands in for a new one (the only guest process a sample starts). */
const DF_TTL_MS = 10_000;
/** A previous sample older than this is not a fair baseline for "now" (the VM may have been idle, then busy). */
const MAX_BASELINE_MS = 10_000;

/** utime+stime (ticks) and RSS (bytes) from /proc/<pid>/stat; the command name may hold spaces and parens, so fields count from the last ")". */
export function parsePidStat(text: string): { cpuTicks: number; rssBytes: number } | null {
  const end = text.lastIndexOf(")");
  if (end < 0) return null;
  const f = text.slice(end + 2).trim().split(/\s+/);
  // f[0] is field 3 (state): utime is field 14, stime 15, rss 24
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  const rss = Number(f[21]);
  if (![utime, stime, rss].every(Number.isFinite)) return null;
  return { cpuTicks: utime + stime, rssBytes: rss * PAGE_BYTES };
}

type _GuestStats = Pick<VMStats, "memUsedBytes" | "memTotalBytes" | "diskUsedBytes" | "diskSizeBytes" | "uptimeSeconds">;

/** What stats.sh printed: /proc/meminfo, /proc/uptime, then `df -kP /` (absent when it was not asked for: disk fields NaN). */
export function parseGuestStats(text: string, withDf = true): _GuestStats {
  const total = meminfoBytes(text, "MemTotal");
  const available = meminfoBytes(text, "MemAvailable");
  const uptime = /^(\d+(?:\.\d+)?) \d+(?:\.\d+)?$/m.exec(text);
  // df -P: "Filesystem 1024-blocks Used Available Capacity Mounted on", then one line per fs
  const df = /^\S+\s+(\d+)\s+(\d+)\s+\d+\s+\d+%\s+\/$/m.exec(text);
  if (!Number.isFinite(total) || !Number.isFinite(available) || !uptime || (withDf && !df)) {
    throw new BangerError("E_INTERNAL", `unexpected stats output from the guest: ${JSON.stringify(text.slice(0, 120))}`);
  }
  return {
    memTotalBytes: total,
    memUsedBytes: total - available,
    uptimeSeconds: Math.floor(Number(uptime[1])),
    diskSizeBytes: df ? Number(df[1]) * 1024 : NaN,
    diskUsedBytes: df ? Number(df[2]) * 1024 : NaN,
  };
}

interface _Sample {
  pid: number;
  cpuTicks: number;
  atMs: number;
}

export interface StatsDeps {
  engine: Engine;
  ssh: SSHPool;
  host: Pick<Host, "fs" | "clock">;
}

/**
 * Samples for `vm stats`. CPU % is the VMM's CPU time over the time since the
 * previous sample of that VM (a `--watch` tick is one second); a first sample
 * measures across its own guest read instead, so it needs no extra wait.
 */
export class StatsSampler {
  private readonly last = new Map<string, _Sample>();
  private readonly disks = new Map<string, { usedBytes: number; sizeBytes: number; atMs: number }>();
  constructor(private readonly d: StatsDeps) {}

  private async cpu(pid: number): Promise<{ cpuTicks: number; rssBytes: number; atMs: number }> {
    const text = await this.d.host.fs.readText(`/proc/${pid}/stat`);
    const s = text ? parsePidStat(text) : null;
    if (!s) throw new BangerError("E_STATE", `the VMM process (pid ${pid}) is gone`);
    return { ...s, atMs: this.d.host.clock.now().getTime() };
  }

  private async guest(vm: VMRecord): Promise<_GuestStats> {
    const nowMs = this.d.host.clock.now().getTime();
    const disk = this.disks.get(vm.id);
    const withDf = !disk || nowMs - disk.atMs >= DF_TTL_MS;
    const conn = await this.d.ssh.get(vm);
    const chunks: Uint8Array[] = [];
    const code = await conn.exec(renderScript(STATS_SH, { WITH_DF: withDf ? 1 : 0 }), { onStdout: (c) => chunks.push(c) });
    if (code !== 0) throw new BangerError("E_INTERNAL", `reading stats in ${vm.name} failed (exit ${code})`);
    const g = parseGuestStats(Buffer.concat(chunks).toString("utf8"), withDf);
    if (withDf) this.disks.set(vm.id, { usedBytes: g.diskUsedBytes, sizeBytes: g.diskSizeBytes, atMs: nowMs });
    else Object.assign(g, { diskUsedBytes: disk!.usedBytes, diskSizeBytes: disk!.sizeBytes });
    return g;
  }

  async sample(vm: VMRecord): Promise<VMStats> {
    const handles = await this.d.engine.handlesOf(vm);
    if (!handles?.pid) throw new BangerError("E_STATE", `vm ${vm.name} is not running`);
    const prev = this.last.get(vm.id);
    const before = await this.cpu(handles.pid);
    const guest = await this.guest(vm);
    const after = await this.cpu(handles.pid);
    const base = prev && prev.pid === handles.pid && before.atMs - prev.atMs < MAX_BASELINE_MS && prev.cpuTicks <= after.cpuTicks ? prev : before;
    this.last.set(vm.id, { pid: handles.pid, cpuTicks: after.cpuTicks, atMs: after.atMs });
    const windowMs = Math.max(1, after.atMs - base.atMs);
    const cpuPercent = Math.round(((after.cpuTicks - base.cpuTicks) / CLOCK_TICKS_PER_S / (windowMs / 1000)) * 1000) / 10;
    return {
      vm: vm.name,
      cpuPercent,
      cpuWindowMs: windowMs,
      vcpus: vm.spec.cpus,
      ...guest,
      vmmRssBytes: after.rssBytes,
      at: new Date(after.atMs).toISOString(),
    };
  }

  forget(vmId: string): void {
    this.last.delete(vmId);
    this.disks.delete(vmId);
  }
}

/** GET /v1/vms/:vm/stats and GET /v1/stats (every running VM). */
export function createStatsRoutes(d: StatsDeps): { handlers: HandlersFor<"stats"> } {
  const sampler = new StatsSampler(d);
  return {
    handlers: {
      statsShow: async ({ params }) => {
        const vm = await d.engine.running(params.vm);
        // its guest is booting: no guest answers yet (an SSH error said so, or "exit 255")
        if (vm.runtime.state === "starting") throw new BangerError("E_STATE", `vm ${vm.name} is still starting: its stats come once its guest is up`);
        return sampler.sample(vm);
      },
      statsList: async () => {
        const vms = d.engine.listVMs().filter((vm) => vm.runtime.state === "running");
        const alive = (await Promise.all(vms.map(async (vm) => ((await d.engine.alive(vm)) ? vm : null)))).filter((vm): vm is VMRecord => vm !== null);
        // one VM's guest not answering must not hide the others: it is left out of this tick
        const out = await Promise.all(alive.map((vm) => sampler.sample(vm).catch(() => null)));
        return { vms: out.filter((s): s is VMStats => s !== null) };
      },
    },
  };
}
