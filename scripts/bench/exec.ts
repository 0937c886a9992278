/**
 * `exec`: one command in a running VM through banger (the daemon's pooled
 * SSH connection) against OpenSSH, fresh and through a ControlMaster.
 */
import { join } from "node:path";
import type { Bench } from "./run.ts";
import { formatTable, ratio, summarize, summaryRow } from "./stats.ts";
import { Ssh, VM_NAME, type BenchVMs } from "./vm.ts";

/** OpenSSH for the shared VM, with a ControlMaster opened now and closed at the end. */
export async function sshFor(b: Bench, vms: BenchVMs): Promise<Ssh> {
  const s = await vms.running();
  const ssh = await Ssh.forGuest(b.tmp, s.runtime.sshPort, join(s.runtime.vmDir, "keys"), `${VM_NAME}-${s.runtime.sshPort}`);
  // the first ControlMaster call opens the master; it is a warm-up, not a sample
  await b.must(ssh.cm("true"));
  b.defer("close ssh ControlMaster", () => b.exec(ssh.cmExit()));
  return ssh;
}

export async function execSection(b: Bench, vms: BenchVMs, n = 20): Promise<void> {
  const ssh = await sshFor(b, vms);
  // warm banger's pooled connection and OpenSSH's page cache before sampling
  await b.must(b.banger("vm", "exec", VM_NAME, "--", "true"));
  await b.must(ssh.cmd("true"));
  const r = await b.interleaved(
    {
      banger: () => b.time(b.banger("vm", "exec", VM_NAME, "--", "true")),
      fresh: () => b.time(ssh.cmd("true")),
      cm: () => b.time(ssh.cm("true")),
    },
    { banger: n, fresh: n, cm: n },
    "exec",
  );
  const s = { banger: summarize(r.banger), fresh: summarize(r.fresh), cm: summarize(r.cm) };
  console.log(formatTable(["variant", "n", "min", "median", "max", "vs fresh ssh", "vs ControlMaster"], [
    [...summaryRow("banger vm exec -- true", s.banger, { baseline: s.fresh }), ratio(s.banger.median, s.cm.median)],
    [...summaryRow("ssh true (fresh connection)", s.fresh, { baseline: s.fresh }), ratio(s.fresh.median, s.cm.median)],
    [...summaryRow("ssh true (ControlMaster)", s.cm, { baseline: s.fresh }), ratio(s.cm.median, s.cm.median)],
  ]));
  b.note("exec", "vm exec -- true / fresh ssh true, medians", ratio(s.banger.median, s.fresh.median));
  b.note("exec", "vm exec -- true / ControlMaster ssh true, medians", ratio(s.banger.median, s.cm.median));
  b.row({ id: "P2", section: "exec", measure: "banger vm exec -- true vs fresh ssh", stats: s.banger, baseline: { name: "ssh true, fresh connection", stats: s.fresh }, goal: { on: "ratio", max: 1 / 3, text: "≥ 3× faster (≤ 0.33×)" } });
  b.row({ id: "P2", section: "exec", measure: "banger vm exec -- true vs ControlMaster", stats: s.banger, baseline: { name: "ssh true, ControlMaster", stats: s.cm }, goal: { on: "ratio", max: 1.2, text: "≤ 1.2× ControlMaster" } });
}
