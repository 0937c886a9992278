/**
 * `npm run bench [sections]`: banger against baselines measured in the same
 * run, in a temp BANGER_HOME that is removed at the end. Sections: cli,
 * autostart, boot, exec, session, image, workspace (default: all; VM ones
 * only as root with qemu present; workspace as root).
 */
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { autostartSection, cliSection, type CliShared } from "./cli.ts";
import { bootSection } from "./boot.ts";
import { execSection } from "./exec.ts";
import { imageSection } from "./image.ts";
import { Bench, killPid, waitGone } from "./run.ts";
import { sessionSection } from "./session.ts";
import { formatTable, pickSections } from "./stats.ts";
import { BenchVMs, vmSkipReason } from "./vm.ts";
import { workspaceSection, workspaceSkipReason } from "./workspace.ts";

const SECTIONS = ["cli", "autostart", "boot", "exec", "session", "image", "workspace"] as const;
type Section = (typeof SECTIONS)[number];
const VM_SECTIONS: ReadonlySet<Section> = new Set(["boot", "exec", "session", "image"]);

const TITLES: Record<Section, string> = {
  cli: "cli: a command with the daemon up vs a compiled Bun hello-world (interleaved)",
  autostart: "autostart: first command with the daemon stopped (auto-start to first answer) vs warm",
  boot: "boot: banger vm run --rm -- true vs raw qemu (same argv, same image) to first ssh true",
  exec: "exec: banger vm exec -- true vs OpenSSH (fresh, ControlMaster) on one running VM",
  session: "session: send→reply round trip to a JSON-lines echo agent vs ssh per message",
  image: "image: guest image size (and build time with BANGER_BENCH_IMAGE_BUILD=1)",
  workspace: "workspace: prepare a ~10k-file / ~200 MB repo vs tar|ssh and git bundle + clone; re-prepare after 10 edits",
};

function envInt(name: string, dflt: number): number {
  const v = Number(process.env[name] ?? "");
  return Number.isInteger(v) && v > 0 ? v : dflt;
}

async function main(): Promise<number> {
  let sections: Section[];
  try {
    sections = pickSections(SECTIONS, process.argv.slice(2));
  } catch (e) {
    console.error(`bench: ${(e as Error).message}`);
    return 2;
  }
  const repo = resolve(import.meta.dir, "../..");
  const bin = resolve(repo, "dist/banger");
  if (!existsSync(bin)) {
    console.error("bench: dist/banger is missing: run `npm run build` (or `npm run bench`, which builds)");
    return 1;
  }
  const b = new Bench({ repo, bin });
  const vms = new BenchVMs(b);
  const shared: CliShared = {};
  const failed: string[] = [];
  const skipVM = vmSkipReason();
  const stopAll = async () => {
    await b.cleanup();
  };
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`bench: ${sig}: cleaning up…`);
    void stopAll().finally(() => process.exit(130));
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
    console.log(`BANGER_HOME=${b.home} · ${navigator.hardwareConcurrency} CPUs · sections: ${sections.join(" ")}`);
    console.log("times are wall clock from spawn to exit (performance.now around Bun.spawn); other work on this machine adds noise: read medians and ratios.");

    for (const sec of sections) {
      console.log(`\n== ${TITLES[sec]}`);
      if (VM_SECTIONS.has(sec) && skipVM) {
        console.log(`  skipped: ${skipVM}`);
        continue;
      }
      const t0 = performance.now();
      try {
        if (sec === "cli") await cliSection(b, shared, envInt("BANGER_BENCH_CLI_N", 30));
        else if (sec === "autostart") await autostartSection(b, shared, envInt("BANGER_BENCH_AUTOSTART_N", 5));
        else if (sec === "boot") await bootSection(b, vms, envInt("BANGER_BENCH_BOOT_N", 3));
        else if (sec === "exec") await execSection(b, vms, envInt("BANGER_BENCH_EXEC_N", 20));
        else if (sec === "session") {
          await sessionSection(b, vms, {
            session: envInt("BANGER_BENCH_SESSION_N", 200),
            fresh: envInt("BANGER_BENCH_SESSION_SSH_N", 30),
            cm: envInt("BANGER_BENCH_SESSION_CM_N", 50),
          });
        } else if (sec === "image") await imageSection(b, vms);
        else if (sec === "workspace") {
          const skip = workspaceSkipReason();
          if (skip) console.log(`  skipped: ${skip}`);
          else await workspaceSection(b, { n: envInt("BANGER_BENCH_WS_N", 3), files: envInt("BANGER_BENCH_WS_FILES", 10_000), megabytes: envInt("BANGER_BENCH_WS_MB", 200) });
        }
        console.log(`  (section took ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (e) {
        failed.push(sec);
        console.log(`  FAILED: ${e instanceof Error ? e.message : String(e)}`);
      }
    }

    console.log("\n== summary (ratios of medians unless p50/p99 is named; baselines measured in this run)");
    if (b.summary.length) console.log(formatTable(["section", "measure", "ratio"], b.summary.map((l) => [l.section, l.what, l.ratio]), ["l", "l", "r"]));
    else console.log("  nothing measured");
    if (failed.length) console.log(`failed sections: ${failed.join(", ")}`);
  } finally {
    await stopAll();
  }
  return failed.length ? 1 : 0;
}

process.exit(await main());
