/**
 * `snap` (issue 15): pause→resume round trip (P8d) on the shared running VM,
 * through the daemon's API as a client sees it; a snapshot of that VM (how
 * long the guest stood still, and the whole command) and a rollback to it
 * (until the guest answers SSH again with the host's clock), vs a cold
 * `vm restart` of the same VM as the baseline; a fork until the clone
 * answers `exec true` (P8b) and how long the source stood still for it;
 * P8c: a fork of 10 clones at once vs one, and each clone's QEMU RSS vs
 * the cold-booted source's. P8a: `vm run --rm -- true` from a warm
 * template (`image warm`) vs `--cold`, interleaved, the shared VM stopped.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Bench } from "./run.ts";
import { formatTable, summarize, summaryRow } from "./stats.ts";
import { VM_NAME, type BenchVMs } from "./vm.ts";

async function api(b: Bench, method: string, path: string): Promise<void> {
  const res = await fetch(`http://banger${path}`, { method, body: "{}", unix: join(b.home, "bangerd.sock") } as RequestInit);
  if (res.status !== 200) throw new Error(`${method} ${path}: HTTP ${res.status}: ${await res.text()}`);
}

/** A process's VmRSS in bytes (the QEMU of a VM). */
function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** A process's proportional set size in bytes (smaps_rollup Pss): pages shared with N processes count 1/N, so clones sharing their snapshot's RAM file in the page cache show what each adds. */
function pssOf(pid: number): number {
  const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
  if (!m) throw new Error(`no Pss for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** One fork of `count` clones until every clone answers `exec true`; the clones' QEMU RSS and PSS then; clones and snapshot removed. */
async function forkAtOnce(b: Bench, count: number, tag: string): Promise<{ ms: number; rss: number[]; pss: number[] }> {
  const names = Array.from({ length: count }, (_, i) => `${VM_NAME}-${tag}${i}`);
  const t = performance.now();
  const f = await b.bangerJson<{ snapshot: { name: string }; vms: { name: string; pid: number }[] }>("vm", "fork", VM_NAME, ...names);
  await Promise.all(names.map((n) => b.must(b.banger("vm", "exec", n, "--", "true"))));
  const ms = performance.now() - t;
  const rss = f.vms.map((v) => rssOf(v.pid));
  const pss = f.vms.map((v) => pssOf(v.pid));
  for (const n of names) await b.must(b.banger("vm", "delete", n, "--force"));
  await b.must(b.banger("snapshot", "rm", `${VM_NAME}@${f.snapshot.name}`));
  return { ms, rss, pss };
}

/** `n` forks of `source`, one clone each, each until the clone answers `exec true`; the source's freeze from each fork's snapshot; clones and snapshots removed. */
async function forkRounds(b: Bench, source: string, n: number): Promise<{ ms: number[]; freeze: number[] }> {
  const ms: number[] = [];
  const freeze: number[] = [];
  for (let i = 0; i < n; i++) {
    const clone = `${source}-f${i}`;
    const t = performance.now();
    const f = await b.bangerJson<{ snapshot: { name: string; freezeMs: number } }>("vm", "fork", source, clone);
    await b.must(b.banger("vm", "exec", clone, "--", "true"));
    ms.push(performance.now() - t);
    freeze.push(f.snapshot.freezeMs);
    await b.must(b.banger("vm", "delete", clone, "--force"));
    await b.must(b.banger("snapshot", "rm", `${source}@${f.snapshot.name}`));
  }
  return { ms, freeze };
}

/** P8a: warm `vm run --rm -- true` (a clone of the image's template) vs a cold one, interleaved; the template removed after. */
async function warmRuns(b: Bench, vms: BenchVMs, n: number): Promise<void> {
  await vms.stop();
  const tpl = await b.bangerJson<{ vmName: string; name: string }>("image", "warm", "default");
  let i = 0;
  let j = 0;
  const samples = await b.interleaved(
    {
      warm: () => b.time(b.banger("vm", "run", "--name", `w${i++}`, "--rm", "--", "true")),
      cold: () => b.time(b.banger("vm", "run", "--cold", "--name", `k${j++}`, "--rm", "--", "true")),
    },
    { warm: n, cold: n },
    "runs",
  );
  await b.must(b.banger("snapshot", "rm", `${tpl.vmName}@${tpl.name}`));
  const s = { warm: summarize(samples.warm), cold: summarize(samples.cold) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs cold"], [
    summaryRow("vm run --rm -- true, warm (template clone)", s.warm, { baseline: s.cold }),
    summaryRow("vm run --rm --cold -- true", s.cold, { baseline: s.cold }),
  ]));
  b.row({ id: "P8a", section: "snap", measure: "warm vm run --rm -- true (clone of the image's template)", stats: s.warm, baseline: { name: "vm run --rm --cold -- true", stats: s.cold }, goal: { on: "ratio", max: 0.2, text: "≤ 0.2× cold" } });
}

/**
 * Where a clone's time from restore to "answering" went, from the guest plugin's debug lines in the
 * daemon log (BANGER_DEBUG=1 for the bench): medians of the clones made since `from` (a log offset).
 */
function cloneProfileNote(b: Bench, from: number): string | undefined {
  let log = "";
  try {
    log = readFileSync(join(b.home, "daemon.log"), "utf8").slice(from);
  } catch {
    return undefined;
  }
  // "guest answering: STEP N ms, STEP N ms; N ms in all" (the steps: plugins/guest/index.ts waitForGuest)
  const rows = [...log.matchAll(/guest answering: (.*?); (\d+) ms in all/g)].map((m) => ({ steps: [...m[1]!.matchAll(/([^,]+?) (\d+) ms/g)].map((x) => [x[1]!.trim(), Number(x[2])] as const), all: Number(m[2]) }));
  if (rows.length === 0) return undefined;
  // the most common sequence of steps (a clone over the agents, or over SSH), medians of each
  const shapes = new Map<string, typeof rows>();
  for (const r of rows) {
    const shape = r.steps.map((x) => x[0]).join(", ");
    shapes.set(shape, [...(shapes.get(shape) ?? []), r]);
  }
  const [, same] = [...shapes.entries()].sort((a, b) => b[1].length - a[1].length)[0]!;
  const med = (xs: number[]) => summarize(xs).median.toFixed(0);
  const steps = same[0]!.steps.map(([name], i) => `${name} ${med(same.map((r) => r.steps[i]![1]))} ms`);
  return `clone, restore → answering (daemon debug log, medians of ${same.length} of ${rows.length}): ${steps.join(", ")}; ${med(same.map((r) => r.all))} ms in all`;
}

function logSize(b: Bench): number {
  try {
    return readFileSync(join(b.home, "daemon.log"), "utf8").length;
  } catch {
    return 0;
  }
}

export async function snapSection(b: Bench, vms: BenchVMs, o: { pauses: number; snapshots: number; forks: number; crowd: number; warm: number }): Promise<void> {
  await vms.running();
  const rounds: number[] = [];
  for (let i = 0; i < o.pauses; i++) {
    const t = performance.now();
    await api(b, "POST", `/v1/vms/${VM_NAME}/pause`);
    await api(b, "POST", `/v1/vms/${VM_NAME}/resume`);
    rounds.push(performance.now() - t);
  }
  const freeze: number[] = [];
  const snapMs: number[] = [];
  const rollbackMs: number[] = [];
  const restartMs: number[] = [];
  for (let i = 0; i < o.snapshots; i++) {
    const t = performance.now();
    const s = await b.bangerJson<{ freezeMs: number; name: string }>("vm", "snapshot", VM_NAME, "--name", `bench-${i}`);
    snapMs.push(performance.now() - t);
    freeze.push(s.freezeMs);
    rollbackMs.push(await b.time(b.banger("vm", "rollback", VM_NAME, `bench-${i}`)));
    restartMs.push(await b.time(b.banger("vm", "restart", VM_NAME)));
    await b.must(b.banger("snapshot", "rm", `${VM_NAME}@bench-${i}`));
  }
  // P8b: fork of the running VM until the clone answers `exec true`; the source's freeze from the fork's own snapshot
  const logFrom = logSize(b);
  const { ms: forkMs, freeze: forkFreeze } = await forkRounds(b, VM_NAME, o.forks);
  const forkNote = cloneProfileNote(b, logFrom);
  // the same from a VM that runs on a snapshot's RAM file mapped private (as a warm start, a clone or a rollback
  // does; a clone of the source here): its snapshot saves the pages it wrote (plugins/qemu/ram-delta.ts)
  const src = `${VM_NAME}-src`;
  const base = await b.bangerJson<{ snapshot: { name: string } }>("vm", "fork", VM_NAME, src);
  const { ms: fromCloneMs, freeze: fromCloneFreeze } = await forkRounds(b, src, o.forks);
  await b.must(b.banger("vm", "delete", src, "--force"));
  await b.must(b.banger("snapshot", "rm", `${VM_NAME}@${base.snapshot.name}`));
  // P8c: `crowd` clones in one fork vs one clone, until all answer; each clone's RSS vs the (cold-booted: vm restart above) source's
  const coldPid = (await b.bangerJson<{ pid: number }>("vm", "show", VM_NAME)).pid;
  const coldRss = rssOf(coldPid);
  const coldPss = pssOf(coldPid);
  const one = o.crowd > 0 ? await forkAtOnce(b, 1, "one") : null;
  const crowd = o.crowd > 0 ? await forkAtOnce(b, o.crowd, "c") : null;
  const s = { rounds: summarize(rounds), freeze: summarize(freeze), snap: summarize(snapMs), rollback: summarize(rollbackMs), restart: summarize(restartMs), fork: summarize(forkMs), forkFreeze: summarize(forkFreeze), fromClone: summarize(fromCloneMs), fromCloneFreeze: summarize(fromCloneFreeze) };
  console.log(formatTable(["measure", "n", "min", "median", "max"], [
    summaryRow("pause → resume (API round trip)", s.rounds),
    summaryRow("vm snapshot: guest frozen", s.freeze),
    summaryRow("vm snapshot (whole command)", s.snap),
    summaryRow("vm rollback → SSH answers", s.rollback),
    summaryRow("vm restart (cold boot) → SSH answers", s.restart),
    summaryRow("vm fork → clone answers exec true", s.fork),
    summaryRow("vm fork: source frozen", s.forkFreeze),
    summaryRow("vm fork of a clone → its clone answers", s.fromClone),
    summaryRow("vm fork of a clone: source frozen", s.fromCloneFreeze),
  ]));
  b.row({ id: "P8d", section: "snap", measure: "pause → resume round trip (API)", stats: s.rounds, goal: { on: "value", max: 50, text: "≤ 50 ms" } });
  b.row({ id: "P8", section: "snap", measure: "vm snapshot of a running VM: guest frozen (disk switch + state save)", stats: s.freeze, goal: { on: "value", max: 150, text: "source frozen ≤ 150 ms (P8b)" } });
  b.row({ id: "P8b", section: "snap", measure: "vm fork of a running VM until the clone answers exec true", stats: s.fork, baseline: { name: "vm restart (cold boot) until SSH answers", stats: s.restart }, goal: { on: "value", max: 1000, text: "≤ 1.0 s" }, note: forkNote });
  b.row({ id: "P8b", section: "snap", measure: "vm fork: source frozen", stats: s.forkFreeze, goal: { on: "value", max: 150, text: "≤ 150 ms" } });
  b.row({ id: "P8b", section: "snap", measure: "vm fork of a VM started from a snapshot (a clone: RAM saved by delta) until its clone answers exec true", stats: s.fromClone, goal: { on: "value", max: 1000, text: "≤ 1.0 s" } });
  b.row({ id: "P8b", section: "snap", measure: "vm fork of a VM started from a snapshot (a clone): source frozen", stats: s.fromCloneFreeze, goal: { on: "value", max: 150, text: "≤ 150 ms" } });
  if (one && crowd) {
    const cold = summarize([coldRss]);
    console.log(`  P8c: fork of ${o.crowd} until all answer exec true ${(crowd.ms / 1000).toFixed(1)} s vs ${(one.ms / 1000).toFixed(1)} s for one (${(crowd.ms / one.ms).toFixed(2)}×); clone QEMU RSS median ${(summarize(crowd.rss).median / 1048576).toFixed(0)} MiB vs the cold-booted source's ${(coldRss / 1048576).toFixed(0)} MiB`);
    b.row({ id: "P8c", section: "snap", measure: `vm fork of ${o.crowd} clones at once until all answer exec true`, stats: summarize([crowd.ms]), baseline: { name: "vm fork of 1 until it answers", stats: summarize([one.ms]) }, goal: { on: "ratio", max: 2.5, text: "≤ 2.5× one clone" } });
    b.row({ id: "P8c", section: "snap", measure: `RSS of each of ${o.crowd} clones (QEMU VmRSS: the snapshot's RAM-file pages it maps count whole in each)`, unit: "bytes", stats: summarize(crowd.rss), baseline: { name: "the cold-booted source VM's QEMU VmRSS", stats: cold }, goal: { on: "ratio", max: 0.5, text: "≤ 0.5× a cold VM's" } });
    console.log(`  P8c: clone QEMU PSS median ${(summarize(crowd.pss).median / 1048576).toFixed(0)} MiB vs the cold-booted source's ${(coldPss / 1048576).toFixed(0)} MiB`);
    b.row({ id: "P8c", section: "snap", measure: `memory each of ${o.crowd} clones adds (QEMU PSS: shared page-cache pages split among their mappers)`, unit: "bytes", stats: summarize(crowd.pss), baseline: { name: "the cold-booted source VM's QEMU PSS", stats: summarize([coldPss]) }, goal: { on: "ratio", max: 0.5, text: "added ≤ 0.5× a cold VM's" } });
  }
  b.row({ id: "P8", section: "snap", measure: "vm rollback to a memory snapshot until SSH answers", stats: s.rollback, baseline: { name: "vm restart (cold boot) until SSH answers", stats: s.restart } });
  if (o.warm > 0) await warmRuns(b, vms, o.warm);
}
