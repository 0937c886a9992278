/**
 * Every bench section, in run order. A section plugs in by adding one entry
 * here: it measures, prints its own table and records its headline figures
 * with `b.row(...)`; main.ts writes them to bench/results.json and
 * results.md. `quick` sections run in `--quick` mode with their quick counts.
 */
import { autostartSection, cliSection, type CliShared } from "./cli.ts";
import { bootSection } from "./boot.ts";
import { e2bFilesSection, e2bFilesSkipReason } from "./e2b-files.ts";
import { e2bSection } from "./e2b.ts";
import { egressSection } from "./egress.ts";
import { execSection } from "./exec.ts";
import { imageSection } from "./image.ts";
import { imageOwnSection } from "./image-own.ts";
import { parallelFakeSection, parallelVmSection } from "./parallel.ts";
import { recoverySection } from "./recovery.ts";
import type { Bench } from "./run.ts";
import { sessionSection } from "./session.ts";
import { snapSection } from "./snap.ts";
import type { BenchVMs } from "./vm.ts";
import { workspaceSection, workspaceSkipReason } from "./workspace.ts";

export interface SectionContext {
  b: Bench;
  vms: BenchVMs;
  shared: CliShared;
  quick: boolean;
  /** A count: env BANGER_BENCH_<NAME> if set, else the quick or full default. */
  n(name: string, full: number, quick: number): number;
}

export interface BenchSection {
  name: string;
  title: string;
  /** Boots real VMs: needs root and qemu, and is skipped in --quick. */
  vm: boolean;
  /** Runs in --quick (test driver only, a few iterations). */
  quick: boolean;
  run(c: SectionContext): Promise<void>;
}

export const SECTIONS: readonly BenchSection[] = [
  {
    name: "cli", vm: false, quick: true,
    title: "cli (P1): a command with the daemon up vs a compiled Bun hello-world (interleaved)",
    run: (c) => cliSection(c.b, c.shared, c.n("CLI_N", 30, 10)),
  },
  {
    name: "autostart", vm: false, quick: true,
    title: "autostart (P1): first command with the daemon stopped (auto-start to first answer) vs warm",
    run: (c) => autostartSection(c.b, c.shared, c.n("AUTOSTART_N", 5, 2)),
  },
  {
    name: "recovery", vm: false, quick: true,
    title: "recovery (P5): daemon kill -9 with live test-driver VMs → all re-adopted; daemon RSS",
    run: (c) => recoverySection(c.b, { vms: c.n("RECOVERY_VMS", 200, 20), rssVms: c.n("RSS_VMS", 50, 10), runs: c.n("RECOVERY_N", 3, 1) }),
  },
  {
    name: "parallel", vm: false, quick: true,
    title: "parallel (P7): 10 parallel test-driver lifecycles (create --start + delete) vs one",
    run: (c) => parallelFakeSection(c.b, { width: c.n("PARALLEL_WIDTH", 10, 10), runs: c.n("PARALLEL_N", 5, 2) }),
  },
  {
    // socat and openssl from the host, no VM; not in --quick (CI's smoke run stays as it was)
    name: "egress", vm: false, quick: false,
    title: "egress: an HTTPS request through the egress gate (socat relay + CONNECT + SNI check) vs direct",
    run: (c) => egressSection(c.b, c.n("EGRESS_N", 30, 5)),
  },
  {
    name: "boot", vm: true, quick: false,
    title: "boot (P3): banger vm run --rm -- true vs raw qemu (same argv, same image) to first ssh true",
    run: (c) => bootSection(c.b, c.vms, c.n("BOOT_N", 3, 1)),
  },
  {
    name: "exec", vm: true, quick: false,
    title: "exec (P2): banger vm exec -- true vs OpenSSH (fresh, ControlMaster) on one running VM",
    run: (c) => execSection(c.b, c.vms, c.n("EXEC_N", 20, 5)),
  },
  {
    name: "session", vm: true, quick: false,
    title: "session (P6): send→reply round trip to a JSON-lines echo agent vs ssh per message",
    run: (c) => sessionSection(c.b, c.vms, { session: c.n("SESSION_N", 200, 20), fresh: c.n("SESSION_SSH_N", 30, 5), cm: c.n("SESSION_CM_N", 50, 5) }),
  },
  {
    name: "parallel-vm", vm: true, quick: false,
    title: "parallel-vm (P7): 10 parallel banger vm run --rm -- true (real VMs) vs one",
    run: (c) => parallelVmSection(c.b, c.vms, { width: c.n("PARALLEL_VM_WIDTH", 10, 10), runs: c.n("PARALLEL_VM_N", 1, 1) }),
  },
  {
    // root for the local sshd that plays the guest (boots no VM), so run with the VM sections and never in --quick
    name: "workspace", vm: true, quick: false,
    title: "workspace (P4): prepare a ~10k-file / ~200 MB repo vs tar|ssh and git bundle + clone; re-prepare after 10 edits",
    run: async (c) => {
      const skip = workspaceSkipReason();
      if (skip) throw new Error(skip);
      await workspaceSection(c.b, { n: c.n("WS_N", 3, 1), files: c.n("WS_FILES", 10_000, 1_000), megabytes: c.n("WS_MB", 200, 20) });
    },
  },
  {
    // root for the local sshd that plays the guest (boots no VM), so run with the VM sections and never in --quick
    name: "e2b-files", vm: true, quick: false,
    title: "e2b-files (issue 19): a 10 MiB file up and down through envd's /files (the e2b SDK) vs GuestFiles (vm cp)",
    run: async (c) => {
      const skip = e2bFilesSkipReason();
      if (skip) throw new Error(skip);
      await e2bFilesSection(c.b, { n: c.n("E2B_FILES_N", 5, 2), megabytes: c.n("E2B_FILES_MB", 10, 10) });
    },
  },
  {
    name: "snap", vm: true, quick: false,
    title: "snap (P8a-d, issue 15): pause→resume round trip; snapshot freeze; rollback vs cold restart; fork until the clone answers; warm vs cold vm run",
    run: (c) => snapSection(c.b, c.vms, { pauses: c.n("SNAP_PAUSE_N", 20, 5), snapshots: c.n("SNAP_N", 3, 1), forks: c.n("SNAP_FORK_N", 3, 1), crowd: c.n("SNAP_CROWD", 10, 0), warm: c.n("SNAP_WARM_N", 3, 0) }),
  },
  {
    name: "image", vm: true, quick: false,
    title: "image: guest image size (and build time with BANGER_BENCH_IMAGE_BUILD=1)",
    run: (c) => imageSection(c.b, c.vms),
  },
  {
    name: "image-own", vm: true, quick: false,
    title: "image-own (issue 16): derived image (+2 packages) vs a full image build; cache hit; boot of an OCI image vs the default",
    run: (c) => imageOwnSection(c.b, c.vms, { derive: c.n("IMAGE_DERIVE_N", 3, 1), hit: c.n("IMAGE_HIT_N", 5, 2), boot: c.n("IMAGE_BOOT_N", 3, 1) }),
  },
  {
    name: "e2b", vm: true, quick: false,
    title: "e2b (issue 19): Sandbox.create through the E2B endpoint vs banger vm create --start (same warm template); getInfo vs vm show; commands.run('true') vs vm exec",
    run: (c) => e2bSection(c.b, c.vms, { creates: c.n("E2B_CREATE_N", 5, 1), infos: c.n("E2B_INFO_N", 20, 5), runs: c.n("E2B_RUN_N", 10, 5) }),
  },
];
