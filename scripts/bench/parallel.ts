/**
 * `parallel` (P7): wall time of 10 VM lifecycles started at once against one
 * alone. With the test driver (create --start + delete, no guest) it is
 * banger's own overhead; with real VMs (`vm run --rm -- true`) it is bounded
 * by the host's cores, since TCG boots are CPU-bound.
 */
import { readFileSync } from "node:fs";
import { FakeWorld } from "./fake.ts";
import type { Bench } from "./run.ts";
import { fmtMs, formatTable, ratio, summarize, summaryRow } from "./stats.ts";
import type { BenchVMs } from "./vm.ts";

export interface ParallelCounts {
  width: number;
  runs: number;
}

async function wall(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** Busy and total jiffies of all CPUs so far, from /proc/stat. */
function cpuJiffies(): { busy: number; total: number } {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/** Time fn and how busy the whole machine's CPUs were meanwhile (0..1): near 1 means CPU-bound. */
async function wallAndLoad(fn: () => Promise<unknown>, loads: number[]): Promise<number> {
  const a = cpuJiffies();
  const ms = await wall(fn);
  const b = cpuJiffies();
  if (b.total > a.total) loads.push((b.busy - a.busy) / (b.total - a.total));
  return ms;
}

/** Test driver: one lifecycle = `vm create --driver fake --start` then `vm delete`. */
export async function parallelFakeSection(b: Bench, c: ParallelCounts): Promise<void> {
  const w = FakeWorld.of(b);
  await w.ready();
  let k = 0;
  const lifecycle = async () => {
    const name = `p${k++}`;
    await w.create(name);
    await w.delete(name);
  };
  await lifecycle(); // warm-up
  const loads: number[] = [];
  const r = await b.interleaved(
    {
      one: () => wall(lifecycle),
      many: () => wallAndLoad(() => Promise.all(Array.from({ length: c.width }, lifecycle)), loads),
    },
    { one: c.runs, many: c.runs },
    "parallel lifecycles",
  );
  const s = { one: summarize(r.one), many: summarize(r.many) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs one"], [
    summaryRow(`${c.width} parallel create --start + delete (wall)`, s.many, { baseline: s.one }),
    summaryRow("one create --start + delete (baseline)", s.one, { baseline: s.one }),
  ]));
  const busy = loads.length ? summarize(loads).median : NaN;
  const cores = navigator.hardwareConcurrency;
  console.log(`  all ${cores} CPUs ${(busy * 100).toFixed(0)}% busy (median) during the parallel runs: ${busy > 0.9 ? "CPU-bound" : "not CPU-bound"}`);
  b.note("parallel", `${c.width} parallel test-driver lifecycles / one, medians`, ratio(s.many.median, s.one.median));
  b.row({
    id: "P7", section: "parallel", measure: `${c.width} parallel vm create --start + delete, test driver (banger's own overhead)`, stats: s.many,
    baseline: { name: "one lifecycle alone", stats: s.one }, goal: { on: "ratio", max: 2.5, text: "≤ 2.5× one run" },
    note: `all ${cores} CPUs ${(busy * 100).toFixed(0)}% busy during the parallel runs (whole machine, other users included); each test-driver VM is a node process that costs ~150 ms of CPU to start, about 2/3 of a lifecycle's CPU, so ${c.width} at once are bound by ${cores} cores`,
  });
}

/** Real VMs: `vm run --name X --rm -- true`, one alone vs `width` at once. */
export async function parallelVmSection(b: Bench, vms: BenchVMs, c: ParallelCounts): Promise<void> {
  await vms.image();
  // the shared VM (if an earlier section booted it) would take CPU from the boots being timed
  const list = JSON.parse((await b.must(b.banger("vm", "list", "--json"))).stdout) as { name: string; runtime: { state: string } }[];
  for (const v of list) if (v.runtime.state === "running") await b.must(b.banger("vm", "stop", v.name));
  let k = 0;
  const run = () => b.must(b.banger("vm", "run", "--name", `q${k++}`, "--rm", "--", "true"));
  const loads: number[] = [];
  const r = await b.interleaved(
    {
      one: () => wall(run),
      many: () => wallAndLoad(() => Promise.all(Array.from({ length: c.width }, run)), loads),
    },
    { one: c.runs, many: c.runs },
    "parallel vm run",
  );
  const s = { one: summarize(r.one), many: summarize(r.many) };
  const cores = navigator.hardwareConcurrency;
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs one"], [
    summaryRow(`${c.width} parallel vm run --rm -- true (wall)`, s.many, { baseline: s.one }),
    summaryRow("one vm run --rm -- true (baseline)", s.one, { baseline: s.one }),
  ]));
  console.log(`  ${cores} cores: CPU-bound boots cannot finish ${c.width} at once faster than ~${(c.width / cores).toFixed(1)}× one (+ memory and I/O contention)`);
  b.note("parallel-vm", `${c.width} parallel vm run / one, medians`, ratio(s.many.median, s.one.median));
  b.row({
    id: "P7", section: "parallel-vm", measure: `${c.width} parallel vm run --rm -- true, real VMs`, stats: s.many,
    baseline: { name: "one vm run alone", stats: s.one }, goal: { on: "ratio", max: 2.5, text: "≤ 2.5× one run" },
    note: `${cores} cores, QEMU TCG: each boot is CPU-bound, so ${c.width} at once need ≥ ${(c.width / cores).toFixed(1)}× the wall time of one on this machine; one boot took ${fmtMs(s.one.median)}; all CPUs ${loads.length ? (summarize(loads).median * 100).toFixed(0) : "?"}% busy during the parallel runs`,
  });
}
