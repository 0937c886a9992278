/**
 * `parallel` (P7): wall time of 10 VM lifecycles started at once against one
 * alone. With the test driver (create --start + delete, no guest) it is
 * banger's own overhead; with real VMs (`vm run --rm -- true`) it is bounded
 * by the host's cores, since TCG boots are CPU-bound.
 */
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
  const r = await b.interleaved(
    {
      one: () => wall(lifecycle),
      many: () => wall(() => Promise.all(Array.from({ length: c.width }, lifecycle))),
    },
    { one: c.runs, many: c.runs },
    "parallel lifecycles",
  );
  const s = { one: summarize(r.one), many: summarize(r.many) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs one"], [
    summaryRow(`${c.width} parallel create --start + delete (wall)`, s.many, { baseline: s.one }),
    summaryRow("one create --start + delete (baseline)", s.one, { baseline: s.one }),
  ]));
  b.note("parallel", `${c.width} parallel test-driver lifecycles / one, medians`, ratio(s.many.median, s.one.median));
  b.row({
    id: "P7", section: "parallel", measure: `${c.width} parallel vm create --start + delete, test driver (banger's own overhead)`, stats: s.many,
    baseline: { name: "one lifecycle alone", stats: s.one }, goal: { on: "ratio", max: 2.5, text: "≤ 2.5× one run" },
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
  const r = await b.interleaved(
    {
      one: () => wall(run),
      many: () => wall(() => Promise.all(Array.from({ length: c.width }, run))),
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
    note: `${cores} cores, QEMU TCG: each boot is CPU-bound, so ${c.width} at once need ≥ ${(c.width / cores).toFixed(1)}× the CPU time of one on this machine; one boot took ${fmtMs(s.one.median)}`,
  });
}
