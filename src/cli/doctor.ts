import { defineCommand } from "./define.ts";
import { resolveHome } from "../shared/paths.ts";
import { environ } from "../host/config.ts";
import { diagnose, kvmUsableIn, type Finding } from "../doctor/checks.ts";
import { gatherHostView } from "../doctor/view.ts";
import { createExec } from "../host/exec.ts";
import { createFS } from "../host/fs.ts";
import { jsonArg, out } from "./context.ts";

const LABEL = { ok: "ok  ", note: "note", warn: "WARN", fail: "FAIL" } as const;

function _line(f: Finding): string {
  const head = `${LABEL[f.level]}  ${f.id.padEnd(20)} ${f.message}`;
  return f.level !== "ok" && f.fix ? `${head}\n      ${"".padEnd(20)} fix: ${f.fix}` : head;
}

export default defineCommand({
  meta: { name: "doctor", description: "Check the host (VMMs, KVM, device-mapper, networking, disk, image) and say how to fix what is missing; exit 1 when VMs cannot run" },
  args: { ...jsonArg },
  async run({ args }) {
    const view = await gatherHostView({ exec: createExec(), fs: createFS() }, { home: resolveHome(environ()) });
    const report = diagnose(view);
    const kvm = report.findings.find((f) => f.id === "kvm")!;
    const count = (l: Finding["level"]) => report.findings.filter((f) => f.level === l).length;
    out({ ok: report.ok, kvm: { usable: kvmUsableIn(view), reason: kvm.message }, findings: report.findings, view }, !!args.json, () =>
      [
        ...report.findings.map(_line),
        "",
        report.ok
          ? `banger can run VMs here (${count("warn")} warnings, ${count("note")} notes)`
          : `banger cannot run VMs here: ${count("fail")} failing check${count("fail") === 1 ? "" : "s"} above, each with its fix`,
      ].join("\n"),
    );
    if (!report.ok) process.exitCode = 1;
  },
});
