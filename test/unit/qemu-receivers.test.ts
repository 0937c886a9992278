import { describe, expect, test } from "bun:test";
import { createQemuDriver, type QmpOps } from "../../plugins/qemu/driver.ts";
import { fakeHost, sampleVM } from "../helpers/fakes.ts";

// The startup reap of snapshot receivers a SIGKILLed daemon left (plugins/qemu/receivers.ts),
// through the driver's reapLeftovers, on recording fakes.

const rcvArgv = (dir: string) => ["-name", "demo-snapshot", "-qmp", `unix:${dir.replaceAll(",", ",,")}/rcv.sock,server=on,wait=off`, "-object", "memory-backend-memfd,id=pc.ram,size=256M,share=on", "-incoming", "defer", "-S"];

/** The VM's own QMP as the reaper sees it: query-migrate answers from `statuses` (one per call, the last one staying). */
function fakeQmp(vmSock: string, statuses: string[]): QmpOps & { asked: string[] } {
  const asked: string[] = [];
  const none = async () => {
    throw new Error("not asked of a reaper");
  };
  return {
    asked,
    ping: none,
    powerdown: none,
    quit: none,
    migrateOut: none,
    migrateIn: none,
    async command(sock, command) {
      asked.push(`${command} ${sock}`);
      if (sock !== vmSock || command !== "query-migrate") throw new Error("QMP connection refused");
      return { status: statuses.length > 1 ? statuses.shift() : statuses[0] };
    },
  };
}

function setup(vmsDir = "/state/vms", qmp?: (vmSock: string) => QmpOps) {
  const host = fakeHost();
  let scans = 0;
  const find = host.procs.find.bind(host.procs);
  host.procs.find = (...n: string[]) => {
    scans++;
    return find(...n);
  };
  const vm = sampleVM({ id: "vm1", name: "demo", state: "running", vmsDir, driver: "qemu" });
  const d = createQemuDriver(host, { pollMs: 10, exitWaitMs: 100, qmp: qmp?.(vm.runtime.apiSockPath) });
  const other = sampleVM({ id: "vm2", name: "quiet", state: "running", vmsDir, driver: "qemu" });
  // each VM's own qemu runs, and must never be touched
  host.procs.add(100, 1, ["/usr/bin/qemu-system-x86_64", "-qmp", `unix:${vm.runtime.apiSockPath},server=on,wait=off`]);
  host.procs.add(101, 1, ["/usr/bin/qemu-system-x86_64", "-qmp", `unix:${other.runtime.apiSockPath},server=on,wait=off`]);
  for (const v of [vm, other]) host.fs.files.set(`${v.runtime.vmDir}/handles.json`, "{}");
  return { host, d, vm, other, scans: () => scans, reap: () => d.reapLeftovers!({ vms: [vm, other], vmsDir }) };
}

describe("qemu: receivers a killed daemon left, reaped at the next daemon's start", () => {
  test("a clean start (no receiver files, every dir owned) does not scan /proc and kills nothing", async () => {
    const s = setup();
    expect(await s.reap()).toEqual([]);
    expect(s.scans()).toBe(0);
    expect(s.host.procs.kills).toEqual([]);
  });

  test("a VM's receiver is killed by pid and start time (not its watchdog, not the VM, not another home's); its socket and stand-in disks go", async () => {
    const s = setup();
    const dir = s.vm.runtime.vmDir;
    for (const f of ["rcv.sock", "rin.sock", "receiver-disk0.img", "receiver-disk1.img", "receiver.log"]) s.host.fs.files.set(`${dir}/${f}`, "");
    s.host.procs.add(200, 7, ["timeout", "-s", "KILL", "600", "/usr/bin/qemu-system-x86_64", ...rcvArgv(dir)]);
    s.host.procs.add(201, 8, ["/usr/bin/qemu-system-x86_64", ...rcvArgv(dir)]);
    // another daemon's home: the same layout, not ours
    s.host.procs.add(300, 9, ["/usr/bin/qemu-system-x86_64", ...rcvArgv("/other/vms/vm1")]);
    const lines = await s.reap();
    expect(s.host.procs.kills).toEqual([{ pid: 201, signal: "SIGKILL" }]);
    expect([...s.host.procs.table.keys()].sort()).toEqual([100, 101, 200, 300]);
    expect(lines).toEqual(["demo: killed the snapshot receiver qemu (pid 201) a killed daemon left", "demo: removed the snapshot receiver's rcv.sock, receiver-disk0.img, receiver-disk1.img, rin.sock"]);
    for (const f of ["rcv.sock", "rin.sock", "receiver-disk0.img", "receiver-disk1.img"]) expect(s.host.fs.files.has(`${dir}/${f}`)).toBe(false);
    // its log stays, for whoever wants to know what it was doing
    expect(s.host.fs.files.has(`${dir}/receiver.log`)).toBe(true);
    expect(s.scans()).toBe(1);
  });

  test("a receiver its VM still streams a background save into is killed only once that stream has ended (QEMU 7.2 would leave the guest stuck), and the wait is said", async () => {
    let qmp: ReturnType<typeof fakeQmp> | undefined;
    const s = setup("/state/vms", (sock) => (qmp = fakeQmp(sock, ["active", "active", "active", "completed"])));
    const dir = s.vm.runtime.vmDir;
    s.host.fs.files.set(`${dir}/rcv.sock`, "");
    s.host.procs.add(201, 8, ["/usr/bin/qemu-system-x86_64", ...rcvArgv(dir)]);
    const kill = s.host.procs.kill.bind(s.host.procs);
    s.host.procs.kill = (pid, signal) => {
      qmp!.asked.push(`kill ${pid}`);
      return kill(pid, signal);
    };
    const lines = await s.reap();
    expect(qmp!.asked.filter((a) => !a.startsWith("kill")).every((a) => a === `query-migrate ${s.vm.runtime.apiSockPath}`)).toBe(true);
    expect(qmp!.asked.slice(-2)).toEqual([`query-migrate ${s.vm.runtime.apiSockPath}`, "kill 201"]);
    expect(qmp!.asked.filter((a) => a.startsWith("query-migrate"))).toHaveLength(4);
    expect(lines[0]).toMatch(/^demo: waited \d+ ms for its state save to finish streaming into the receiver$/);
    expect(lines[1]).toBe("demo: killed the snapshot receiver qemu (pid 201) a killed daemon left");
  });

  test("a receiver whose VM's save is over (or whose VM does not answer) is killed at once, nothing said of a wait", async () => {
    for (const statuses of [["completed"], ["failed"]]) {
      const s = setup("/state/vms", (sock) => fakeQmp(sock, statuses));
      const dir = s.vm.runtime.vmDir;
      s.host.fs.files.set(`${dir}/rcv.sock`, "");
      s.host.procs.add(201, 8, ["/usr/bin/qemu-system-x86_64", ...rcvArgv(dir)]);
      expect((await s.reap())[0]).toBe("demo: killed the snapshot receiver qemu (pid 201) a killed daemon left");
    }
  });

  test("a receiver whose start time no longer matches (its pid reused) is left alone", async () => {
    const s = setup();
    const dir = s.vm.runtime.vmDir;
    s.host.fs.files.set(`${dir}/rcv.sock`, "");
    s.host.procs.add(201, 8, ["/usr/bin/qemu-system-x86_64", ...rcvArgv(dir)]);
    // between the scan and the kill the pid becomes a stranger's
    const find = s.host.procs.find;
    s.host.procs.find = async (...n: string[]) => {
      const found = await find(...n);
      s.host.procs.add(201, 99, ["sleep", "1000"]);
      return found;
    };
    await s.reap();
    expect(s.host.procs.kills).toEqual([]);
    expect(s.host.procs.table.get(201)?.cmdline).toEqual(["sleep", "1000"]);
  });

  test("the receiver of a VM dir no row owns is killed too; the dir itself is the sweep's", async () => {
    const s = setup();
    const dir = "/state/vms/gone1";
    s.host.fs.files.set(`${dir}/rcv.sock`, "");
    s.host.fs.files.set(`${dir}/system.img`, "");
    // a temp beside the VM dirs is not a VM's dir (no scan for it)
    s.host.fs.dirs.add("/state/vms/.x.build-1-abc");
    s.host.procs.add(201, 8, ["/usr/bin/qemu-system-x86_64", ...rcvArgv(dir)]);
    const lines = await s.reap();
    expect(s.host.procs.kills).toEqual([{ pid: 201, signal: "SIGKILL" }]);
    expect(lines).toEqual(["dir gone1 (no vm): killed the snapshot receiver qemu (pid 201) a killed daemon left"]);
    expect(s.host.fs.files.has(`${dir}/rcv.sock`)).toBe(true);
  });

  test("a home whose path has a comma (escaped twice in QEMU's argv) is matched", async () => {
    const s = setup("/st,ate/vms");
    const dir = s.vm.runtime.vmDir;
    expect(dir).toBe("/st,ate/vms/vm1");
    s.host.fs.files.set(`${dir}/receiver-disk0.img`, "");
    s.host.procs.add(201, 8, ["/usr/bin/qemu-system-x86_64", ...rcvArgv(dir)]);
    await s.reap();
    expect(s.host.procs.kills).toEqual([{ pid: 201, signal: "SIGKILL" }]);
  });

  test("a receiver that will not die is the reap's error (the engine logs it and goes on)", async () => {
    const s = setup();
    const dir = s.vm.runtime.vmDir;
    s.host.fs.files.set(`${dir}/rcv.sock`, "");
    s.host.procs.add(201, 8, ["/usr/bin/qemu-system-x86_64", ...rcvArgv(dir)]);
    s.host.procs.kill = (pid, signal) => {
      s.host.procs.kills.push({ pid, signal });
      return true;
    };
    await expect(s.reap()).rejects.toThrow("did not exit after SIGKILL");
  });
});
