/**
 * `cli` and `autostart`: what a command costs with the daemon up, and what
 * the first command pays when it has to start the daemon, each against a
 * baseline measured in the same run.
 */
import type { Bench } from "./run.ts";
import { fmtMs, formatTable, median, ratio, summarize, summaryRow, type Summary } from "./stats.ts";

const HEADER = ["variant", "n", "min", "median", "max", "vs baseline"];

/** The warm `vm list --json` median from the cli section, reused by autostart when both run. */
export interface CliShared {
  warmList?: Summary;
}

export async function cliSection(b: Bench, shared: CliShared, n = 30): Promise<void> {
  const hello = await b.hello();
  // the first call auto-starts the daemon; a few more warm the page cache
  for (let i = 0; i < 3; i++) await b.must(b.banger("vm", "list", "--json"));
  await b.noteDaemon();
  const floor = await b.floor();
  await b.must(floor);

  const list = await b.interleaved(
    { list: () => b.time(b.banger("vm", "list", "--json")), floor: () => b.time(floor), hello: () => b.time([hello]) },
    { list: n, floor: n, hello: n },
    "vm list vs floor vs hello",
  );
  const version = await b.interleaved(
    { version: () => b.time(b.banger("--version")), hello: () => b.time([hello]) },
    { version: n, hello: n },
    "--version vs hello",
  );
  const profile = await profileList(b, hello, n);
  const s = {
    list: summarize(list.list),
    floor: summarize(list.floor),
    helloA: summarize(list.hello),
    version: summarize(version.version),
    helloB: summarize(version.hello),
  };
  shared.warmList = s.list;
  console.log(formatTable(HEADER, [
    summaryRow("banger vm list --json (daemon up)", s.list, { baseline: s.helloA }),
    summaryRow("floor: one GET + owner check, nothing else", s.floor, { baseline: s.helloA }),
    summaryRow("bun hello-world (baseline)", s.helloA, { baseline: s.helloA }),
    summaryRow("banger --version (no daemon contact)", s.version, { baseline: s.helloB }),
    summaryRow("bun hello-world (baseline)", s.helloB, { baseline: s.helloB }),
  ]));
  b.note("cli", "vm list --json (daemon up) / compiled bun hello-world, medians", ratio(s.list.median, s.helloA.median));
  b.row({ id: "P1", section: "cli", measure: "banger vm list --json (daemon up)", stats: s.list, baseline: { name: "compiled Bun hello-world", stats: s.helloA }, goal: { on: "ratio", max: 1.3, text: "≤ 1.3× hello-world" }, note: profile });
  b.row({ id: "P1", section: "cli", measure: "floor: one GET + owner check and nothing else (scripts/bench/floor.ts, built as banger)", stats: s.floor, baseline: { name: "compiled Bun hello-world", stats: s.helloA } });
  b.row({ id: "P1", section: "cli", measure: "banger --version (no daemon contact)", stats: s.version, baseline: { name: "compiled Bun hello-world", stats: s.helloB } });
  b.note("cli", "banger --version / compiled bun hello-world, medians", ratio(s.version.median, s.helloB.median));
}

export async function autostartSection(b: Bench, shared: CliShared, n = 5): Promise<void> {
  const hello = await b.hello();
  const cold: number[] = [];
  const warm: number[] = [];
  const helloMs: number[] = [];
  for (let i = 0; i < n; i++) {
    await b.must(b.banger("daemon", "stop"));
    cold.push(await b.time(b.banger("vm", "list", "--json")));
    await b.noteDaemon();
    // warm samples right after, interleaved with the floor, so both see the same machine state
    for (let j = 0; j < 3; j++) {
      warm.push(await b.time(b.banger("vm", "list", "--json")));
      helloMs.push(await b.time([hello]));
    }
  }
  const s = { cold: summarize(cold), warm: summarize(warm), hello: summarize(helloMs) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs warm list"], [
    summaryRow("vm list --json, daemon stopped (auto-start)", s.cold, { baseline: s.warm }),
    summaryRow("vm list --json, daemon up (baseline)", s.warm, { baseline: s.warm }),
    summaryRow("bun hello-world", s.hello, { baseline: s.warm }),
  ]));
  if (shared.warmList) {
    console.log(`  (cli section's warm vm list median: ${shared.warmList.median.toFixed(1)} ms → cold/warm ${ratio(s.cold.median, shared.warmList.median)})`);
  }
  b.note("autostart", "vm list with daemon auto-start / warm vm list, medians", ratio(s.cold.median, s.warm.median));
  b.row({ id: "P1", section: "autostart", measure: "vm list --json with the daemon stopped (auto-start to first answer)", stats: s.cold, baseline: { name: "warm vm list --json", stats: s.warm } });
}

/**
 * Where `vm list --json`'s milliseconds go: BANGER_PROFILE=1 makes the CLI
 * print its phase marks (ms since the process started, src/host/profile.ts)
 * at exit; the last phase is the wall time after the exit mark (teardown,
 * reaping, the bench's own spawn overhead, which hello-world pays too).
 * Medians per phase over n runs, interleaved with hello-world.
 */
async function profileList(b: Bench, hello: string, n: number): Promise<string | undefined> {
  const env = { ...b.env, BANGER_PROFILE: "1" };
  const phases = new Map<string, number[]>();
  const walls: number[] = [];
  const hellos: number[] = [];
  const cpus: number[] = [];
  const add = (k: string, v: number) => (phases.get(k) ?? phases.set(k, []).get(k)!).push(v);
  for (let i = 0; i < n; i++) {
    const r = await b.must(b.banger("vm", "list", "--json"), { env });
    const line = r.stderr.split("\n").find((l) => l.startsWith('{"profile"'));
    if (!line) {
      // a build from before BANGER_PROFILE (BANGER_BENCH_BIN=an older copy): nothing to break down
      console.log("  (no profile: this binary prints no BANGER_PROFILE marks)");
      return undefined;
    }
    const p = JSON.parse(line) as { profile: [string, number][]; cpuMs?: number };
    const marks = p.profile;
    if (p.cpuMs !== undefined) cpus.push(p.cpuMs);
    let prev = 0;
    let prevName = "process start";
    for (const [name, t] of marks) {
      add(`${prevName} → ${name}`, t - prev);
      prev = t;
      prevName = name;
    }
    add("exit → process gone (wall after the exit mark)", r.ms - prev);
    walls.push(r.ms);
    hellos.push(await b.time([hello]));
  }
  const rows = [...phases].map(([k, v]) => [k, fmtMs(median(v)), `${fmtMs(Math.min(...v))}–${fmtMs(Math.max(...v))}`]);
  rows.push(["whole command (wall, BANGER_PROFILE=1)", fmtMs(median(walls)), `${fmtMs(Math.min(...walls))}–${fmtMs(Math.max(...walls))}`]);
  rows.push(["compiled Bun hello-world (wall)", fmtMs(median(hellos)), `${fmtMs(Math.min(...hellos))}–${fmtMs(Math.max(...hellos))}`]);
  if (cpus.length) rows.push(["CPU time at exit, all threads", fmtMs(median(cpus)), `${fmtMs(Math.min(...cpus))}–${fmtMs(Math.max(...cpus))}`]);
  console.log(`  profile of vm list --json, ${n} runs (phase medians; they need not add up to the whole's median):`);
  console.log(formatTable(["phase", "median", "min–max"], rows));
  const extra = cpus.length ? `; CPU at exit ${fmtMs(median(cpus))} (all threads)` : "";
  return `profile (medians of ${n} runs, BANGER_PROFILE=1): ${[...phases].map(([k, v]) => `${k} ${fmtMs(median(v))}`).join("; ")}; whole ${fmtMs(median(walls))} vs hello-world ${fmtMs(median(hellos))}${extra}`;
}
