// The real-VM subset of the fault-injection suite (test/integration/faults.test.ts):
// a QEMU guest through a daemon that SIGKILLs itself right after launching the
// VM, while its RAM streams into a snapshot's receiver, while the receiver builds
// its RAM file, in the middle of a stop and in the middle of a delete; and a VM a
// background save cut midway left stuck. Two boots in all.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createConnection } from "node:net";
import { basename, join } from "node:path";
import { createInterface } from "node:readline";
import { parseTempName } from "../../src/shared/temps.ts";
import { alive, waitFor, killAndWait } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

const BOOT = 300_000;

/** QMP commands in order on one connection; their answers (an error answer, or none within 5 s, throws). */
async function qmp(sock: string, commands: [string, unknown?][]): Promise<unknown[]> {
  const conn = createConnection(sock);
  const lines = createInterface({ input: conn })[Symbol.asyncIterator]();
  const next = async () => {
    const line = await Promise.race([lines.next(), Bun.sleep(5000).then(() => null)]);
    if (!line || line.done) throw new Error(`qmp ${sock}: no answer`);
    return JSON.parse(String(line.value)) as { return?: unknown; error?: { desc: string }; event?: string };
  };
  try {
    await next(); // the greeting
    const out: unknown[] = [];
    for (const [execute, args] of [["qmp_capabilities"], ...commands] as [string, unknown?][]) {
      conn.write(JSON.stringify(args === undefined ? { execute } : { execute, arguments: args }) + "\n");
      let r = await next();
      while (r.event) r = await next();
      if (r.error) throw new Error(`qmp ${execute}: ${r.error.desc}`);
      out.push(r.return);
    }
    return out.slice(1);
  } finally {
    conn.destroy();
  }
}

e2e.describe("daemon crashes around a real VM (QEMU)", () => {
  const h = e2eReady ? e2eHome("banger-e2e-fault-") : (null as never);
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "crashy", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });
  const show = () => h.run(["vm", "show", "crashy", "--json"]).json();
  const armed = (point: string, args: string[]) => {
    killAndWait(h.daemonPid()); // the next call starts a daemon with the fault armed
    const r = h.run(args, { BANGER_FAULT: point });
    expect(r.code).not.toBe(0);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain(`SIGKILL at ${point}`);
  };
  const noTemps = () => expect(readdirSync(h.home, { recursive: true }).map(String).filter((f) => parseTempName(basename(f)) !== null)).toEqual([]);

  test("killed right after launch: the next daemon adopts the booting VM; start and exec then work without a second boot", async () => {
    expect(h.run(["vm", "create", "crashy", "--vmm", "qemu"]).code).toBe(0);
    armed("start:after-launch", ["vm", "start", "crashy"]);
    const adopted = show(); // auto-starts an unarmed daemon: reconcile ran
    expect(adopted.alive).toBe(true);
    expect(adopted.runtime.state).toBe("running");
    expect(qemuPidsUnder(h.home)).toEqual([adopted.pid]);
    expect(h.run(["vm", "start", "crashy"]).code).toBe(0);
    expect(show().pid).toBe(adopted.pid);
    expect(await waitFor(() => h.run(["vm", "exec", "crashy", "--", "true"]).code === 0, 180_000, 2000)).toBe(true);
    noTemps();
  }, BOOT);

  test("killed while a running VM's RAM streams into a snapshot's receiver (QEMU's background save): the next daemon lets the stream end before it kills the receiver, and the guest runs on (QEMU 7.2 keeps the guest's memory write-protected after a save cut midway: it never ran again)", async () => {
    // ~120 MB more of the guest's RAM not zero (grown in place: `$x = "b" x N` would copy it, twice that), so the stream outlasts the next daemon's start
    const fill = `perl -e '$x = "b"; $x x= 120_000_000; open(my $f, ">", "/tmp/filled"); close $f; sleep 3600' >/dev/null 2>&1 & echo $! > /tmp/filler.pid`;
    expect(h.run(["vm", "exec", "crashy", "--", "sh", "-c", fill]).code).toBe(0);
    expect(await waitFor(() => h.run(["vm", "exec", "crashy", "--", "test", "-e", "/tmp/filled"]).code === 0, 120_000, 500)).toBe(true);
    const vm = show();
    armed("snapshot:ram-streaming", ["vm", "snapshot", "crashy", "--name", "cut"]);
    const after = show(); // auto-starts an unarmed daemon: reconcile ran
    expect(after).toMatchObject({ alive: true, pid: vm.pid, runtime: { state: "running" } });
    const waited = /crashy: waited (\d+) ms for its state save to finish streaming into the receiver/.exec(readFileSync(join(h.home, "daemon.log"), "utf8"));
    console.log(`the next daemon waited ${waited?.[1]} ms for the stream before killing the receiver`);
    expect(waited).not.toBeNull();
    expect(qemuPidsUnder(h.home)).toEqual([vm.pid]);
    expect(h.run(["vm", "exec", "crashy", "--", "sh", "-c", "echo runs > /tmp/after; cat /tmp/after"]).stdout).toBe("runs\n");
    expect(h.run(["snapshot", "list", "--json"]).json()).toEqual([]);
    noTemps();
    expect(h.run(["vm", "exec", "crashy", "--", "sh", "-c", 'kill "$(cat /tmp/filler.pid)"; rm -f /tmp/filled /tmp/filler.pid']).code).toBe(0);
  }, BOOT);

  test("a background save cut by anything else (its reader gone after 3 MB): QEMU 7.2 leaves the guest stuck; the next daemon stops the VM with the reason, and it starts again", async () => {
    const vm = show();
    const sock = vm.runtime.apiSockPath as string;
    await qmp(sock, [
      ["migrate-set-capabilities", { capabilities: [{ capability: "background-snapshot", state: true }] }],
      ["stop"],
      ["migrate", { uri: "exec:head -c 3000000 >/dev/null" }],
    ]);
    // the save fails once its reader has gone; QEMU may then answer (the guest alone stuck) or not (its main loop stuck too)
    const failed = async () => ((await qmp(sock, [["query-migrate"]]).catch(() => [{ status: "no answer" }]))[0] as { status?: string }).status;
    let status: string | undefined;
    expect(await waitFor(async () => ["failed", "no answer"].includes((status = await failed()) ?? ""), 60_000, 200)).toBe(true);
    killAndWait(h.daemonPid());
    const after = show(); // the next daemon: reconcile ran
    console.log(`QEMU after the cut: ${status}; the next daemon: ${after.runtime.lastError}`);
    expect(after).toMatchObject({ alive: false, runtime: { state: "stopped" } });
    // found by the threads blocked on the protection, and the save's status while QMP still answers (it may stop later)
    expect(after.runtime.lastError).toMatch(/^its guest cannot run again: (a background state save failed|QEMU stopped answering)/);
    expect(qemuPidsUnder(h.home)).toEqual([]);
    expect(h.run(["vm", "start", "crashy"]).code).toBe(0);
    expect(h.run(["vm", "exec", "crashy", "--", "true"]).code).toBe(0);
  }, BOOT);

  test("killed while a snapshot's receiver builds its RAM file: the next daemon kills the receiver and drops the half-made snapshot; the VM runs on, an earlier snapshot still restores, the next snapshot works; removing the snapshot it runs on does not get it killed at the next start", async () => {
    expect(h.run(["vm", "snapshot", "crashy", "--name", "good"]).code).toBe(0);
    const vm = show();
    const rcvFiles = () => readdirSync(vm.runtime.vmDir).filter((f) => f === "rcv.sock" || /^receiver-disk\d+\.img$/.test(f));
    armed("snapshot:in-receiver", ["vm", "snapshot", "crashy", "--name", "cut"]);
    // the dead daemon's receiver (a second qemu under this home) is still there, RAM file mapped shared
    const orphans = qemuPidsUnder(h.home).filter((p) => p !== vm.pid);
    expect(orphans).toHaveLength(1);
    expect(rcvFiles().length).toBeGreaterThan(0);
    const after = show(); // auto-starts an unarmed daemon: reconcile ran
    expect(after).toMatchObject({ alive: true, pid: vm.pid, runtime: { state: "running" } });
    expect(qemuPidsUnder(h.home)).toEqual([vm.pid]);
    expect(alive(orphans[0]!)).toBe(false);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain(`killed the snapshot receiver qemu (pid ${orphans[0]}) a killed daemon left`);
    expect(rcvFiles()).toEqual([]);
    // all of the snapshot or none of it: none (its receiver ran before the commit), no files of it left
    expect(h.run(["snapshot", "list", "--json"]).json().map((s: { name: string }) => s.name)).toEqual(["good"]);
    expect(readdirSync(join(h.home, "snapshots"))).toHaveLength(1);
    noTemps();
    expect(h.run(["vm", "exec", "crashy", "--", "true"]).code).toBe(0);
    expect(h.run(["vm", "rollback", "crashy", "good"]).code).toBe(0);
    expect(h.run(["vm", "exec", "crashy", "--", "true"]).code).toBe(0);
    expect(h.run(["vm", "snapshot", "crashy", "--name", "next"]).code).toBe(0);
    expect(existsSync(join(h.run(["snapshot", "show", "crashy@next", "--json"]).json().dir, "memory.ram"))).toBe(true);
    expect(qemuPidsUnder(h.home)).toHaveLength(1);
    // the snapshot it was rolled back to, removed while the VM runs on it (its RAM file; on copy storage with
    // absolute backing names, its disks too): the next daemon's sweep neither kills the VM nor removes what it runs on
    const goodDir = h.run(["snapshot", "show", "crashy@good", "--json"]).json().dir as string;
    expect(h.run(["snapshot", "rm", "crashy@good"]).code).toBe(0);
    const kept = existsSync(goodDir); // its files kept for the VM (no row), or (disks linked into the VM's dir) all gone
    const running = show();
    killAndWait(h.daemonPid());
    expect(show()).toMatchObject({ alive: true, pid: running.pid, runtime: { state: "running" } });
    expect(existsSync(goodDir)).toBe(kept);
    if (kept) expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain(`sweep: left ${goodDir} (snapshot dir with no row): vm crashy (pid ${running.pid}) runs on it`);
    expect(h.run(["vm", "exec", "crashy", "--", "true"]).code).toBe(0);
  }, BOOT);

  test("killed while a fork's clone is restored, before it has its own identity: the next daemon stops the clone (its guest still had the source's hostname, keys and RNG state) and says why; started again, it boots as itself", () => {
    const vm = show();
    armed("start:after-launch", ["vm", "fork", "crashy", "crashy-c"]);
    const clone = h.run(["vm", "show", "crashy-c", "--json"]).json(); // an unarmed daemon: reconcile ran
    expect(clone).toMatchObject({ alive: false, runtime: { state: "stopped" } });
    expect(clone.runtime.lastError).toContain("its start from a snapshot was cut short");
    expect(show()).toMatchObject({ alive: true, pid: vm.pid, runtime: { state: "running" } });
    expect(qemuPidsUnder(h.home)).toEqual([vm.pid]);
    expect(h.run(["vm", "start", "crashy-c"]).code).toBe(0);
    expect(h.run(["vm", "exec", "crashy-c", "--", "hostname"]).stdout).toBe("crashy-c\n");
    expect(h.run(["vm", "delete", "crashy-c", "--force"]).code).toBe(0);
    for (const s of h.run(["snapshot", "list", "--json"]).json() as { vmName: string; name: string }[]) expect(h.run(["snapshot", "rm", `${s.vmName}@${s.name}`]).code).toBe(0);
  }, BOOT);

  test("killed in the middle of a stop: the live VM is kept running (adopted), and stop then works", () => {
    const pid = show().pid;
    armed("stop:after-stopping", ["vm", "stop", "crashy"]);
    const after = show();
    expect(after).toMatchObject({ alive: true, pid, runtime: { state: "running" } });
    expect(h.run(["vm", "stop", "crashy"]).code).toBe(0);
    expect(show()).toMatchObject({ alive: false, runtime: { state: "stopped" } });
    expect(qemuPidsUnder(h.home)).toEqual([]);
    expect(existsSync(join(after.runtime.vmDir, "handles.json"))).toBe(false);
  }, BOOT);

  test("killed in the middle of a delete: the next daemon finishes it", () => {
    const dir = show().runtime.vmDir;
    armed("delete:after-deleting", ["vm", "delete", "crashy"]);
    const list = h.run(["vm", "list", "--json"]).json();
    expect(list).toEqual([]);
    expect(existsSync(dir)).toBe(false);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("reconcile crashy: finished deleting");
    expect(qemuPidsUnder(h.home)).toEqual([]);
    noTemps();
  }, BOOT);
});
