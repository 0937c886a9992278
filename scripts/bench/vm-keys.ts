/**
 * What one generateVMKeys costs the daemon (issue 15, P8b/P8c: a clone makes
 * its keys on the daemon's CPU): wall ms and CPU ms per call, CPU counted as
 * this process plus the children it waited for (/proc/self/stat utime+stime+
 * cutime+cstime), since a key made by a spawned tool costs the spawn too.
 * Usage: bun scripts/bench/vm-keys.ts [N=20]
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { generateVMKeys } from "../../plugins/guest/seed.ts";
import { createFS } from "../../src/host/fs.ts";
import { summarize } from "./stats.ts";

const n = Number(process.argv[2] ?? 20);
const TICK_MS = 10; // USER_HZ is 100 on Linux

async function cpuMs(): Promise<{ self: number; children: number }> {
  const stat = await readFile("/proc/self/stat", "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const u = process.cpuUsage();
  // cutime and cstime are fields 16 and 17 of stat(5), counted from 1; f[0] is field 3
  return { self: (u.user + u.system) / 1000, children: (Number(f[13]) + Number(f[14])) * TICK_MS };
}

const root = await mkdtemp(join(tmpdir(), "banger-bench-keys-"));
try {
  const fs = createFS();
  await generateVMKeys({ fs, dir: join(root, "warm") }); // load the code paths once
  const walls: number[] = [];
  const load = loadavg()[0]!;
  const cpu0 = await cpuMs();
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await generateVMKeys({ fs, dir: join(root, String(i)) });
    walls.push(performance.now() - t0);
  }
  const cpu1 = await cpuMs();
  const self = cpu1.self - cpu0.self;
  const children = cpu1.children - cpu0.children;
  const w = summarize(walls);
  console.log(JSON.stringify({ n, wallMs: { median: +w.median.toFixed(3), mean: +w.mean.toFixed(3), min: +w.min.toFixed(3), max: +w.max.toFixed(3) }, cpuMsPerCall: +((self + children) / n).toFixed(3), selfCpuMsPerCall: +(self / n).toFixed(3), childCpuMsPerCall: +(children / n).toFixed(3), load1Before: load, load1After: loadavg()[0] }));
} finally {
  await rm(root, { recursive: true, force: true });
}
