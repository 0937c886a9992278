/**
 * `cli` and `autostart`: what a command costs with the daemon up, and what
 * the first command pays when it has to start the daemon, each against a
 * baseline measured in the same run.
 */
import type { Bench } from "./run.ts";
import { formatTable, ratio, summarize, summaryRow, type Summary } from "./stats.ts";

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

  const list = await b.interleaved(
    { list: () => b.time(b.banger("vm", "list", "--json")), hello: () => b.time([hello]) },
    { list: n, hello: n },
    "vm list vs hello",
  );
  const version = await b.interleaved(
    { version: () => b.time(b.banger("--version")), hello: () => b.time([hello]) },
    { version: n, hello: n },
    "--version vs hello",
  );
  const s = {
    list: summarize(list.list),
    helloA: summarize(list.hello),
    version: summarize(version.version),
    helloB: summarize(version.hello),
  };
  shared.warmList = s.list;
  console.log(formatTable(HEADER, [
    summaryRow("banger vm list --json (daemon up)", s.list, { baseline: s.helloA }),
    summaryRow("bun hello-world (baseline)", s.helloA, { baseline: s.helloA }),
    summaryRow("banger --version (no daemon contact)", s.version, { baseline: s.helloB }),
    summaryRow("bun hello-world (baseline)", s.helloB, { baseline: s.helloB }),
  ]));
  b.note("cli", "vm list --json (daemon up) / compiled bun hello-world, medians", ratio(s.list.median, s.helloA.median));
  b.row({ id: "P1", section: "cli", measure: "banger vm list --json (daemon up)", stats: s.list, baseline: { name: "compiled Bun hello-world", stats: s.helloA }, goal: { on: "ratio", max: 1.3, text: "≤ 1.3× hello-world" } });
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
