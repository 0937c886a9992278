/**
 * `npm run bench [--quick] [sections]`: banger against baselines measured in
 * the same run, in a temp BANGER_HOME that is removed at the end. Sections
 * are listed in sections.ts (default: all; VM ones only as root with qemu
 * present). `--quick`: the test-driver sections with few iterations (< 60 s).
 * Headline figures go to bench/results.json and bench/results.md
 * (bench/results-quick.* in quick mode); rows of sections not run this time
 * are carried over from the previous file with their own date.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { writeFileAtomic } from "../../src/host/fs.ts";
import type { CliShared } from "./cli.ts";
import { gitSha, machineInfo } from "./machine.ts";
import { makeRow, mergeRows, previousRows, toJson, toMarkdown, type Results } from "./results.ts";
import { Bench, killPid, waitGone } from "./run.ts";
import { SECTIONS, type BenchSection, type SectionContext } from "./sections.ts";
import { formatTable, pickSections } from "./stats.ts";
import { BenchVMs, vmSkipReason } from "./vm.ts";

function envInt(name: string, dflt: number): number {
  const v = Number(process.env[name] ?? "");
  return Number.isInteger(v) && v > 0 ? v : dflt;
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const quick = args.includes("--quick");
  const names = args.filter((a) => a !== "--quick");
  let sections: BenchSection[];
  try {
    const all = SECTIONS.map((x) => x.name);
    const picked = pickSections(all, names);
    const chosen = names.length ? picked : quick ? SECTIONS.filter((x) => x.quick).map((x) => x.name) : picked;
    sections = SECTIONS.filter((x) => chosen.includes(x.name));
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    return 2;
  }
  const repo = resolve(import.meta.dir, "../..");
  // BANGER_BENCH_BIN: time a copy, so rebuilding dist/banger during a long run cannot swap the binary mid-run
  const bin = resolve(repo, process.env.BANGER_BENCH_BIN || "dist/banger");
  if (!existsSync(bin)) {
    console.error("bench: dist/banger is missing: run `npm run build` (or `npm run bench`, which builds)");
    return 1;
  }
  const b = new Bench({ repo, bin });
  const vms = new BenchVMs(b);
  const shared: CliShared = {};
  const failed: string[] = [];
  const ran: string[] = [];
  const ctx: SectionContext = { b, vms, shared, quick, n: (name, full, q) => envInt(`BANGER_BENCH_${name}`, quick ? q : full) };
  const skipVM = vmSkipReason();
  const stopAll = async () => {
    await b.cleanup();
  };
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`bench: ${sig}: cleaning up…`);
    // exit 130 whether or not cleanup worked, but say when it did not (a VM or daemon may be left)
    stopAll()
      .catch((e) => console.error(`bench cleanup failed: ${e instanceof Error ? e.message : String(e)}`))
      .finally(() => process.exit(130));
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);

  try {
    await b.init();
    b.defer("stop the bench daemon", async () => {
      await b.exec(b.banger("daemon", "stop"));
      // `daemon stop` returns once the socket is gone; the process may still be closing the DB
      for (const pid of b.daemonPids) {
        if (!(await waitGone(pid, "banger", 10_000)) && killPid(pid, "banger")) console.error(`bench cleanup: killed leftover daemon pid ${pid}`);
      }
    });
    const version = (await b.must(b.banger("--version"))).stdout.trim();
    console.log(`banger bench — ${version} — ${new Date().toISOString()}`);
    console.log(`BANGER_HOME=${b.home} · ${navigator.hardwareConcurrency} CPUs · ${quick ? "QUICK · " : ""}sections: ${sections.map((x) => x.name).join(" ")}`);
    console.log("times are wall clock from spawn to exit (performance.now around Bun.spawn); other work on this machine adds noise: read medians and ratios.");

    for (const sec of sections) {
      console.log(`\n== ${sec.title}`);
      if (sec.vm && skipVM) {
        console.log(`  skipped: ${skipVM}`);
        continue;
      }
      const t0 = performance.now();
      const before = b.rows.length;
      try {
        await sec.run(ctx);
        ran.push(sec.name);
        console.log(`  (section took ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (e) {
        failed.push(sec.name);
        // a failed section's partial figures are not results: its previous rows are kept instead
        b.rows.splice(before);
        console.log(`  FAILED: ${e instanceof Error ? e.message : String(e)}`);
      }
    }

    console.log("\n== summary (ratios of medians unless p50/p99 is named; baselines measured in this run)");
    if (b.summary.length) console.log(formatTable(["section", "measure", "ratio"], b.summary.map((l) => [l.section, l.what, l.ratio]), ["l", "l", "r"]));
    else console.log("  nothing measured");
    if (failed.length) console.log(`failed sections: ${failed.join(", ")}`);
    await writeResults(b, ran, quick);
  } finally {
    await stopAll();
  }
  return failed.length ? 1 : 0;
}

/** bench/results.json + results.md: this run's rows, merged with the previous file's rows for sections not run. */
async function writeResults(b: Bench, ran: string[], quick: boolean): Promise<void> {
  const dir = join(b.repo, "bench");
  mkdirSync(dir, { recursive: true });
  const base = join(dir, quick ? "results-quick" : "results");
  const date = new Date().toISOString();
  const sha = await gitSha(b.repo);
  const prevText = existsSync(`${base}.json`) ? readFileSync(`${base}.json`, "utf8") : null;
  const rows = mergeRows(b.rows.map((r) => makeRow(r, date, sha)), ran, previousRows(prevText), date, sha);
  const res: Results = { machine: await machineInfo(), date, sha, mode: quick ? "quick" : "full", rows };
  await writeFileAtomic(`${base}.json`, toJson(res), 0o644);
  await writeFileAtomic(`${base}.md`, toMarkdown(res), 0o644);
  console.log(`\nwrote ${base}.json and ${base}.md (${b.rows.length} rows from this run)`);
}

process.exit(await main());
