import { defineCommand } from "./define.ts";
import type { VMStats } from "../shared/api.ts";
import { daemon, isTTY, jsonArg, out } from "./context.ts";
import { writeOut } from "../host/stdio.ts";
import { nowMs } from "../host/clock.ts";

const MiB = 1024 * 1024;

function _mib(n: number): string {
  return n >= 10 * 1024 * MiB ? `${(n / 1024 / MiB).toFixed(1)}G` : `${Math.round(n / MiB)}M`;
}

function _uptime(s: number): string {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d}d${h}h` : h ? `${h}h${m}m` : `${m}m${s % 60}s`;
}

function _table(stats: VMStats[]): string {
  if (stats.length === 0) return "no running vms";
  const rows = [
    ["NAME", "CPU%", "MEM USED/TOTAL", "DISK USED/SIZE", "UPTIME", "VMM RSS"],
    ...stats.map((s) => [s.vm, s.cpuPercent.toFixed(1), `${_mib(s.memUsedBytes)}/${_mib(s.memTotalBytes)}`, `${_mib(s.diskUsedBytes)}/${_mib(s.diskSizeBytes)}`, _uptime(s.uptimeSeconds), _mib(s.vmmRssBytes)]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

export default defineCommand({
  meta: { name: "stats", description: "CPU %, memory, disk and uptime of one running VM or all: banger vm stats [VM] [--watch]" },
  args: {
    vm: { type: "positional", required: false, description: "VM name (default: every running VM)" },
    watch: { type: "boolean", alias: "w", description: "Refresh every second until Ctrl-C (with --json: one JSON line per second)" },
    ...jsonArg,
  },
  async run({ args }) {
    const c = await daemon();
    const name = args.vm as string | undefined;
    const sample = async (): Promise<VMStats | { vms: VMStats[] }> => (name ? c.call("statsShow", { params: { vm: name } }) : c.call("statsList"));
    const rows = (s: VMStats | { vms: VMStats[] }) => ("vms" in s ? s.vms : [s]);
    if (!args.watch) {
      const s = await sample();
      out(s, !!args.json, () => _table(rows(s)));
      return;
    }
    process.on("SIGINT", () => process.exit(0));
    const redraw = isTTY() && !args.json;
    for (;;) {
      const started = nowMs();
      const s = await sample();
      if (args.json) writeOut(1, JSON.stringify(s) + "\n");
      else writeOut(1, (redraw ? "\x1b[H\x1b[2J" : "") + _table(rows(s)) + "\n" + (redraw ? "" : "\n"));
      await Bun.sleep(Math.max(0, 1000 - (nowMs() - started)));
    }
  },
});
