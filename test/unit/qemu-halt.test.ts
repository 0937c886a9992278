import { describe, expect, test } from "bun:test";
import { qemuHaltedBy } from "../../plugins/qemu/halt.ts";

/** A QMP stand-in answering from a table, recording what was asked. */
function qmp(answers: Record<string, unknown>) {
  const asked: string[] = [];
  const ask = async (command: string) => {
    asked.push(command);
    if (!(command in answers)) throw new Error(`unexpected ${command}`);
    const a = answers[command];
    if (a instanceof Error) throw a;
    return a;
  };
  return { ask, asked };
}

// query-block as QEMU 7.2 answered it for a guest halted on a full host disk (werror=enospc, the default)
const BLOCK_NOSPACE = [{ device: "disk0", "io-status": "nospace", inserted: { file: "/h/vms/a/system.img" } }, { device: "disk1", "io-status": "ok", inserted: { file: "/h/vms/a/work.img" } }];

describe("qemuHaltedBy", () => {
  test("running, or paused by request: null, from query-status alone", async () => {
    for (const status of ["running", "paused", "postmigrate"]) {
      const q = qmp({ "query-status": { status, running: status === "running" } });
      expect(await qemuHaltedBy(q.ask)).toBeNull();
      expect(q.asked).toEqual(["query-status"]);
    }
  });

  test("io-error with a disk out of space: names the disk's file and the full host filesystem", async () => {
    const q = qmp({ "query-status": { status: "io-error", running: false }, "query-block": BLOCK_NOSPACE });
    expect(await qemuHaltedBy(q.ask)).toBe("QEMU stopped its guest: a write to its disk (/h/vms/a/system.img) found no space left on the host's filesystem");
    expect(q.asked).toEqual(["query-status", "query-block"]);
  });

  test("io-error of another kind, or with no disk saying which: still a halt, said as far as known", async () => {
    expect(await qemuHaltedBy(qmp({ "query-status": { status: "io-error" }, "query-block": [{ device: "disk0", "io-status": "failed" }] }).ask)).toBe("QEMU stopped its guest: a write to its disk (disk0) failed on the host");
    expect(await qemuHaltedBy(qmp({ "query-status": { status: "io-error" }, "query-block": new Error("gone") }).ask)).toBe("QEMU stopped its guest on a disk error");
    expect(await qemuHaltedBy(qmp({ "query-status": { status: "internal-error" } }).ask)).toStartWith("QEMU stopped its guest on an internal error");
  });

  test("a QMP that fails: the error goes to the caller (the engine calls that no halt)", async () => {
    expect(qemuHaltedBy(qmp({ "query-status": new Error("no answer") }).ask)).rejects.toThrow("no answer");
  });
});
