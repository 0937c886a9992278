import { describe, expect, test } from "bun:test";
import { BangerError } from "../../src/shared/errors.ts";
import { emptyHandles, type VMHandles, type VMRecord } from "../../src/shared/model.ts";
import type { Host, ProcInfo } from "../../src/host/types.ts";
import type { BootConfig } from "../../src/vmm/driver.ts";
import { createQemuDriver, type QmpOps } from "../../plugins/qemu/driver.ts";
import { fakeFS } from "../helpers/fakes.ts";
import { deviceStream, mappedStream, NEW_DEVICES, wholeStream } from "../helpers/qemu-stream.ts";

function sampleVM(): VMRecord {
  return {
    id: "abc123",
    name: "demo",
    spec: { image: "default", cpus: 1, memoryMiB: 256, diskMiB: 0, workDiskMiB: 0, driver: "qemu", storage: "copy" },
    runtime: {
      state: "created", guestIP: "", apiSockPath: "/v/abc123/api.sock", vsockPath: "", vsockCID: 0,
      logPath: "/v/abc123/serial.log", metricsPath: "", dnsName: "", vmDir: "/v/abc123", systemOverlay: "",
      workDiskPath: "", lastError: "", sshHost: "", sshPort: 0,
    },
    createdAt: "", updatedAt: "",
  };
}

const BOOT: BootConfig = {
  kernelPath: "/img/vmlinuz",
  initrdPaths: ["/img/initrd.img"],
  kernelArgs: [],
  disks: [{ path: "/v/abc123/system.img", format: "raw" }],
  netArgs: [],
};

const QMP_NEEDLE = "unix:/v/abc123/api.sock,server=on,wait=off";

/** A recording fake host: processes live in a table, time moves only when someone sleeps. */
function fakeHost(o: { which?: string | null; files?: string[] } = {}) {
  const rec = {
    runs: [] as { cmd: string; args: string[] }[],
    spawns: [] as { cmd: string; args: string[]; logPath?: string }[],
    kills: [] as { pid: number; signal: string | number }[],
    removed: [] as string[],
    writes: new Map<string, string>(),
    qmp: [] as string[],
    renames: [] as string[],
  };
  const procs = new Map<number, ProcInfo>();
  const files = new Set(o.files ?? ["/img/vmlinuz", "/img/initrd.img", "/v/abc123/system.img"]);
  let t = 0;
  let nextPid = 4000;
  /** What a spawned qemu does: "ok" answers QMP, "die" exits at once. */
  let spawnBehaviour: "ok" | "die" | "hang" | "nosock" = "ok";
  let answering = new Set<number>();
  /** How the guest reacts to the power button. */
  let powerdownExits = true;
  let quitExits = true;
  /** What query-status says: QMP stop sets it, cont clears it. */
  let paused = false;
  let postmigrate = false;
  /** QEMU refuses background-snapshot (a clone's RAM file mapped private). */
  let bgRefused = false;
  /** What query-migrate says on the VM's own socket, one status per call, the last one staying (none: "completed"). */
  let vmMigrate: string[] = [];
  /** background-snapshot, as query-migrate-capabilities says. */
  let bgOn = false;
  /** The kernel wait channel of each thread of a process, as /proc/<pid>/task/<tid>/wchan (tids pid, pid+1, …). */
  const wchans = new Map<number, string[]>();
  const sockOwner = (sock = "/v/abc123/api.sock") => [...procs.values()].find((p) => p.cmdline.includes(sock === "/v/abc123/api.sock" ? QMP_NEEDLE : `unix:${sock},server=on,wait=off`));

  const qmp: QmpOps = {
    async ping(sock) {
      rec.qmp.push(`ping ${sock}`);
      const p = sockOwner(sock);
      return !!p && answering.has(p.pid);
    },
    async powerdown(sock) {
      rec.qmp.push(`powerdown ${sock}`);
      const p = sockOwner();
      if (!p) return false;
      if (powerdownExits) procs.delete(p.pid);
      return true;
    },
    async quit(sock) {
      rec.qmp.push(`quit ${sock}`);
      const p = sockOwner();
      if (!p) return false;
      if (quitExits) procs.delete(p.pid);
      return true;
    },
    async command(sock, command, _timeoutMs, args) {
      rec.qmp.push(`${command} ${sock}${args ? ` ${JSON.stringify(args)}` : ""}`);
      if (!sockOwner(sock)) throw new Error("QMP connection closed");
      if (command === "stop") paused = true;
      if (command === "cont") paused = postmigrate = false;
      if (command === "migrate-set-capabilities" && JSON.stringify(args).includes('"background-snapshot","state":true') && bgRefused) {
        throw new Error("QMP GenericError: Background-snapshot is not compatible with guest memory configuration");
      }
      if (command === "migrate") {
        // a background save: QEMU runs the guest again itself once its RAM is write-protected; the stream ends later
        const uri = String((args as { uri: string }).uri);
        files.add(uri.slice(uri.lastIndexOf(" '") + 2, -1).replaceAll("'\\''", "'"));
        paused = false;
        t += 3;
      }
      if (command === "query-migrate") return { status: sock === "/v/abc123/api.sock" && vmMigrate.length ? (vmMigrate.length > 1 ? vmMigrate.shift()! : vmMigrate[0]!) : "completed" };
      if (command === "query-migrate-capabilities") return [{ capability: "x-ignore-shared", state: false }, { capability: "background-snapshot", state: bgOn }];
      if (command === "query-block") return [{ device: "disk0", inserted: { image: { "virtual-size": 1073741824 } } }];
      if (command === "query-block-jobs") return [];
      return command === "query-status" ? { status: paused ? (postmigrate ? "postmigrate" : "paused") : "running", running: !paused } : {};
    },
    async migrateOut(sock, uri, _timeoutMs, o) {
      rec.qmp.push(`migrate-out ${sock} ${uri}${o?.capabilities ? ` ${Object.entries(o.capabilities).map(([k, v]) => `${k}=${v ? "on" : "off"}`).join(",")}` : ""}`);
      if (!sockOwner(sock)) throw new Error("QMP connection closed");
      // QEMU 7.2: a VM stopped since its last migration out is not migrated again until it has run
      if (sock === "/v/abc123/api.sock") {
        if (postmigrate) throw new Error("QMP GenericError: Can't migrate the vm that was paused due to previous migration");
        postmigrate = paused;
      }
      // what the exec: command does in the end: the state file appears under its final name
      if (uri.startsWith("exec:")) files.add(uri.slice(uri.lastIndexOf(" '") + 2, -1).replaceAll("'\\''", "'"));
      t += 30;
    },
    async migrateIn(sock, uri, _timeoutMs, o) {
      rec.qmp.push(`migrate-in ${sock} ${uri}${o?.capabilities ? ` ${Object.entries(o.capabilities).map(([k, v]) => `${k}=${v ? "on" : "off"}`).join(",")}` : ""}`);
      if (!sockOwner(sock)) throw new Error("QMP connection closed");
    },
  };

  const host: Host = {
    exec: {
      async run(cmd, args) {
        rec.runs.push({ cmd, args });
        return { stdout: "", stderr: "", exitCode: 0 };
      },
      async spawnDetached(cmd, args, opts) {
        rec.spawns.push({ cmd, args, logPath: opts?.logPath });
        const pid = nextPid++;
        if (spawnBehaviour !== "die") procs.set(pid, { pid, startTime: 1000 + pid, cmdline: [cmd, ...args] });
        // a watchdog's child: the qemu it runs, a process of its own that answers QMP
        const qemu = cmd === "timeout" ? nextPid++ : pid;
        if (qemu !== pid && spawnBehaviour !== "die") procs.set(qemu, { pid: qemu, startTime: 1000 + qemu, cmdline: args.slice(3) });
        if (spawnBehaviour === "ok") for (const p of new Set([pid, qemu])) answering.add(p);
        // a qemu that starts makes its QMP socket (one that hangs too: it only never answers)
        const qmpArg = args[args.indexOf("-qmp") + 1];
        if (spawnBehaviour !== "die" && spawnBehaviour !== "nosock" && args.includes("-qmp") && qmpArg) files.add(qmpArg.replace(/^unix:/, "").replace(/,.*$/, ""));
        if (spawnBehaviour === "die") rec.writes.set("/v/abc123/qemu.log", (rec.writes.get("/v/abc123/qemu.log") ?? "") + "qemu: could not load kernel\n");
        return pid;
      },
      async which(cmd) {
        return o.which === undefined ? `/usr/bin/${cmd}` : o.which;
      },
    },
    procs: {
      async info(pid) {
        return procs.get(pid) ?? null;
      },
      async find(...needles) {
        return [...procs.values()].filter((p) => needles.every((n) => p.cmdline.join(" ").includes(n)));
      },
      kill(pid, signal) {
        rec.kills.push({ pid, signal });
        if (signal === "SIGKILL") procs.delete(pid);
        return true;
      },
    },
    clock: {
      now: () => new Date(t),
      sleep: async (ms) => {
        t += ms;
      },
      timer: () => () => {},
    },
    fs: {
      ...fakeFS(),
      async readText(p) {
        const w = /^\/proc\/(\d+)\/task\/(\d+)\/wchan$/.exec(p);
        if (w) return wchans.get(Number(w[1]))?.[Number(w[2]) - Number(w[1])] ?? null;
        return rec.writes.get(p) ?? null;
      },
      async writeAtomic(p, d) {
        rec.writes.set(p, String(d));
      },
      async exists(p) {
        return files.has(p);
      },
      async mkdirp() {},
      async list(dir) {
        const task = /^\/proc\/(\d+)\/task$/.exec(dir);
        if (task) return (wchans.get(Number(task[1])) ?? []).map((_, i) => ({ name: String(Number(task[1]) + i), type: "dir" as const }));
        // a live qemu's open files: a memfd among them when it has memory-backend-memfd
        const pid = Number(/^\/proc\/(\d+)\/fd$/.exec(dir)?.[1]);
        return procs.get(pid)?.cmdline.some((a) => a.startsWith("memory-backend-memfd")) ? ["0", "1", "2", "9", "12"].map((name) => ({ name, type: "symlink" as const })) : [];
      },
      async readlink(p) {
        const [, pid, fd] = /^\/proc\/(\d+)\/fd\/(\d+)$/.exec(p) ?? [];
        if (!procs.has(Number(pid))) return null;
        return fd === "12" ? "/memfd:memory-backend-memfd (deleted)" : fd === "9" ? "/v/abc123/receiver-disk0.img" : "/dev/null";
      },
      async rmrf(p) {
        rec.removed.push(p);
      },
      async rename(from, to) {
        rec.renames.push(`${from} → ${to}`);
      },
    },
    ssh: { dial: async () => { throw new Error("no ssh in unit tests"); } },
  };
  return {
    host,
    qmp,
    rec,
    procs,
    elapsed: () => t,
    set: (s: { spawn?: "ok" | "die" | "hang" | "nosock"; powerdownExits?: boolean; quitExits?: boolean; bgRefused?: boolean; vmMigrate?: string[]; bgOn?: boolean; wchans?: [number, string[]] }) => {
      if (s.spawn) spawnBehaviour = s.spawn;
      if (s.vmMigrate) vmMigrate = [...s.vmMigrate];
      if (s.bgOn !== undefined) bgOn = s.bgOn;
      if (s.wchans) wchans.set(...s.wchans);
      if (s.bgRefused !== undefined) bgRefused = s.bgRefused;
      if (s.powerdownExits !== undefined) powerdownExits = s.powerdownExits;
      if (s.quitExits !== undefined) quitExits = s.quitExits;
    },
    addProc: (p: ProcInfo, answers = true) => {
      procs.set(p.pid, p);
      if (answers) answering.add(p.pid);
    },
  };
}

function handlesFor(pid: number, startTime: number): VMHandles {
  return { ...emptyHandles(), pid, pidStartTime: startTime };
}

/** A launched VM, stopped by the caller, saved with runOn into its prepared receiver (QEMU's background save); the QMP record starts at the save. */
async function backgroundSaved() {
  const f = fakeHost();
  const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
  const r = await d.launch(sampleVM(), BOOT);
  const h = handlesFor(r.pid, r.pidStartTime);
  const prepared = await d.prepareSave!(sampleVM(), h, "/snaps/s1/state.mig");
  await d.pause!(sampleVM(), h);
  f.rec.qmp.length = 0;
  const saved = (await prepared.save({ runOn: true }))!;
  return { f, d, r, prepared, saved };
}

describe("qemu driver: launch", () => {
  test("missing binary → E_MISSING_TOOL naming the package and doctor", async () => {
    const f = fakeHost({ which: null });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const err = await d.launch(sampleVM(), BOOT).catch((e) => e);
    expect(err).toBeInstanceOf(BangerError);
    expect(err.code).toBe("E_MISSING_TOOL");
    expect(err.message).toBe("qemu-system-x86_64 not found: install qemu-system-x86 (run `banger doctor`)");
    expect(f.rec.spawns).toHaveLength(0);
  });

  test("missing kernel → clear error, nothing spawned", async () => {
    const f = fakeHost({ files: [] });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await expect(d.launch(sampleVM(), BOOT)).rejects.toThrow(/kernel not found: \/img\/vmlinuz/);
    expect(f.rec.spawns).toHaveLength(0);
  });

  test("removes the stale socket, spawns detached with qemu.log, waits for QMP, returns pid + start time", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    expect(r).toEqual({ pid: 4000, pidStartTime: 5000 });
    expect(f.rec.removed).toContain("/v/abc123/api.sock");
    // a boot maps no snapshot's RAM: the links an earlier restore left go (the snapshot's files may be all they keep)
    expect(f.rec.removed).toEqual(expect.arrayContaining(["/v/abc123/restored.ram", "/v/abc123/restored.mig"]));
    expect(f.rec.spawns).toHaveLength(1);
    const s = f.rec.spawns[0]!;
    expect(s.cmd).toBe("/usr/bin/qemu-system-x86_64");
    expect(s.logPath).toBe("/v/abc123/qemu.log");
    expect(s.args).toContain("tcg,tb-size=64");
    expect(s.args).toContain(QMP_NEEDLE);
    expect(f.rec.qmp).toContain("ping /v/abc123/api.sock");
  });

  test("accel comes from the probe when not forced", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { qmp: f.qmp, probe: async () => ({ usable: true, reason: "test" }) });
    await d.launch(sampleVM(), BOOT);
    expect(f.rec.spawns[0]!.args.join(" ")).toContain("-accel kvm -cpu host");
    const g = fakeHost();
    await createQemuDriver(g.host, { qmp: g.qmp, probe: async () => ({ usable: false, reason: "pvm" }) }).launch(sampleVM(), BOOT);
    expect(g.rec.spawns[0]!.args.join(" ")).toContain("-accel tcg,tb-size=64");
  });

  test("several initrds are concatenated into VMDir/initrd.img", async () => {
    const f = fakeHost({ files: ["/img/vmlinuz", "/img/a.img", "/img/b.img", "/v/abc123/system.img"] });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await d.launch(sampleVM(), { ...BOOT, initrdPaths: ["/img/a.img", "/img/b.img"] });
    const runs = f.rec.runs.filter((r) => r.cmd !== "mkfifo");
    expect(runs).toHaveLength(1);
    const [out, tmp, ...parts] = runs[0]!.args.slice(-4);
    expect([out, ...parts]).toEqual(["/v/abc123/initrd.img", "/img/a.img", "/img/b.img"]);
    // written next to it under a temp name the startup sweep recognises, then renamed
    expect(tmp).toMatch(/^\/v\/abc123\/\.initrd\.img\.tmp-\d+-/);
    const args = f.rec.spawns[0]!.args;
    expect(args[args.indexOf("-initrd") + 1]).toBe("/v/abc123/initrd.img");
  });

  test("qemu dies during launch → one line: qemu.log's last line and where the log is", async () => {
    const f = fakeHost();
    f.set({ spawn: "die" });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await expect(d.launch(sampleVM(), BOOT)).rejects.toThrow(/^qemu exited during launch: [^\n]*could not load kernel[^\n]* \(log: \/v\/abc123\/qemu.log\)$/);
    // its command line was written for a snapshot's receiver; a QEMU that never came up takes it along
    expect(f.rec.writes.has("/v/abc123/qemu-argv.json")).toBe(true);
    expect(f.rec.removed).toContain("/v/abc123/qemu-argv.json");
    // and the agents' ports' FIFOs it was given
    for (const x of ["/v/abc123/agent.in", "/v/abc123/agent.out", "/v/abc123/exec.in", "/v/abc123/exec.out"]) expect(f.rec.removed).toContain(x);
  });

  test("socket never answers → E_TIMEOUT and the process is killed", async () => {
    const f = fakeHost();
    f.set({ spawn: "hang" });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp, launchTimeoutMs: 1000 });
    const err = await d.launch(sampleVM(), BOOT).catch((e) => e);
    expect(err.code).toBe("E_TIMEOUT");
    expect(f.rec.kills).toEqual([{ pid: 4000, signal: "SIGKILL" }]);
  });
});

test("launch: no QMP connection before qemu has made its socket; then one ping waits for the greeting (seconds, not 500 ms)", async () => {
  const f = fakeHost();
  f.set({ spawn: "nosock" });
  const pings: number[] = [];
  const ping = f.qmp.ping;
  f.qmp.ping = (sock, timeoutMs) => {
    pings.push(timeoutMs);
    return ping(sock, timeoutMs);
  };
  const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp, launchTimeoutMs: 1000 });
  expect((await d.launch(sampleVM(), BOOT).catch((e) => e)).code).toBe("E_TIMEOUT");
  expect(pings).toEqual([]);
  const g = fakeHost();
  const gp: number[] = [];
  const gping = g.qmp.ping;
  g.qmp.ping = (sock, timeoutMs) => {
    gp.push(timeoutMs);
    return gping(sock, timeoutMs);
  };
  await createQemuDriver(g.host, { accel: "tcg", qmp: g.qmp }).launch(sampleVM(), BOOT);
  expect(gp).toEqual([5000]);
});

describe("qemu driver: find, stop, kill", () => {
  test("findProcess matches a qemu holding this VM's socket only", async () => {
    const f = fakeHost();
    f.addProc({ pid: 10, startTime: 1, cmdline: ["tail", "-f", "/v/abc123/api.sock"] });
    f.addProc({ pid: 11, startTime: 2, cmdline: ["/usr/bin/qemu-system-x86_64", "-qmp", "unix:/v/abc123/api.sock2,server=on,wait=off"] });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    expect(await d.findProcess(sampleVM())).toBeNull();
    f.addProc({ pid: 12, startTime: 3, cmdline: ["/usr/bin/qemu-system-x86_64", "-qmp", QMP_NEEDLE] });
    expect(await d.findProcess(sampleVM())).toEqual({ pid: 12, startTime: 3 });
  });

  test("stop: powerdown, guest exits within the timeout, no signal sent", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    await d.stop(sampleVM(), handlesFor(r.pid, r.pidStartTime), 5000);
    expect(f.rec.qmp.filter((q) => !q.startsWith("ping"))).toEqual(["powerdown /v/abc123/api.sock"]);
    expect(f.rec.kills).toEqual([]);
    expect(f.procs.size).toBe(0);
  });

  test("stop: guest ignores the power button → waits timeoutMs, then QMP quit", async () => {
    const f = fakeHost();
    f.set({ powerdownExits: false });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    const t0 = f.elapsed();
    await d.stop(sampleVM(), handlesFor(r.pid, r.pidStartTime), 2000);
    expect(f.elapsed() - t0).toBeGreaterThanOrEqual(2000);
    expect(f.rec.qmp.filter((q) => !q.startsWith("ping"))).toEqual(["powerdown /v/abc123/api.sock", "quit /v/abc123/api.sock"]);
    expect(f.rec.kills).toEqual([]);
  });

  test("stop: QMP quit ignored too → SIGKILL by pid (start time matches)", async () => {
    const f = fakeHost();
    f.set({ powerdownExits: false, quitExits: false });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    await d.stop(sampleVM(), handlesFor(r.pid, r.pidStartTime), 500);
    expect(f.rec.kills).toEqual([{ pid: r.pid, signal: "SIGKILL" }]);
    expect(f.rec.removed.slice(-5)).toEqual(["/v/abc123/api.sock", "/v/abc123/agent.in", "/v/abc123/agent.out", "/v/abc123/exec.in", "/v/abc123/exec.out"]);
  });

  test("stop/kill never signal a reused pid (start time differs, not our process)", async () => {
    const f = fakeHost();
    f.set({ powerdownExits: false, quitExits: false });
    // pid 777 now belongs to something else that started later
    f.addProc({ pid: 777, startTime: 99999, cmdline: ["/usr/sbin/nginx"] }, false);
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const stale = handlesFor(777, 12345);
    await d.stop(sampleVM(), stale, 500);
    await d.kill(sampleVM(), stale);
    expect(f.rec.kills).toEqual([]);
    expect(f.procs.has(777)).toBe(true);
  });

  test("kill: SIGKILL the recorded process, then remove the socket and the agents' FIFOs", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    f.rec.removed.length = 0;
    await d.kill(sampleVM(), handlesFor(r.pid, r.pidStartTime));
    expect(f.rec.kills).toEqual([{ pid: r.pid, signal: "SIGKILL" }]);
    expect(f.rec.removed).toEqual(["/v/abc123/api.sock", "/v/abc123/agent.in", "/v/abc123/agent.out", "/v/abc123/exec.in", "/v/abc123/exec.out"]);
  });

  test("kill with empty handles finds the VM's qemu by its socket (after a daemon restart)", async () => {
    const f = fakeHost();
    f.addProc({ pid: 55, startTime: 7, cmdline: ["/usr/bin/qemu-system-x86_64", "-qmp", QMP_NEEDLE] });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await d.kill(sampleVM(), emptyHandles());
    expect(f.rec.kills).toEqual([{ pid: 55, signal: "SIGKILL" }]);
  });

  test("apiAnswers asks QMP on the API socket", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    expect(await d.apiAnswers(sampleVM())).toBe(false);
    await d.launch(sampleVM(), BOOT);
    expect(await d.apiAnswers(sampleVM())).toBe(true);
  });
});

describe("qemu driver: double launch", () => {
  test("refuses to launch when a qemu already holds this VM's socket", async () => {
    const f = fakeHost();
    f.addProc({ pid: 55, startTime: 7, cmdline: ["/usr/bin/qemu-system-x86_64", "-qmp", QMP_NEEDLE] });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const err = (await d.launch(sampleVM(), BOOT).catch((e: unknown) => e)) as BangerError;
    expect(err.code).toBe("E_STATE");
    expect(f.rec.spawns).toHaveLength(0);
    expect(f.rec.removed).not.toContain("/v/abc123/api.sock");
  });
});

describe("qemu driver: pause and resume", () => {
  test("pause is QMP stop, resume is cont, runState reads query-status; the process is never signalled", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    const h = handlesFor(r.pid, r.pidStartTime);
    expect(await d.runState!(sampleVM())).toBe("running");
    await d.pause!(sampleVM(), h);
    expect(await d.runState!(sampleVM())).toBe("paused");
    expect(await d.apiAnswers(sampleVM())).toBe(true);
    await d.resume!(sampleVM(), h);
    expect(await d.runState!(sampleVM())).toBe("running");
    expect(f.rec.qmp.filter((q) => !q.startsWith("ping"))).toEqual([
      "query-status /v/abc123/api.sock",
      "stop /v/abc123/api.sock",
      "query-status /v/abc123/api.sock",
      "cont /v/abc123/api.sock",
      "query-status /v/abc123/api.sock",
    ]);
    expect(f.rec.kills).toEqual([]);
  });

  test("switchDisk: blockdev-snapshot-sync of drive disk<i> onto the given overlay (mode existing, qcow2), the path passed as data, never through a shell", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    f.rec.runs.length = 0;
    const hostile = "/v/it's; $(reboot)\n`x`/system.qcow2";
    await d.switchDisk!(sampleVM(), handlesFor(r.pid, r.pidStartTime), 1, hostile);
    expect(f.rec.qmp.filter((q) => q.startsWith("blockdev"))).toEqual([
      `blockdev-snapshot-sync /v/abc123/api.sock ${JSON.stringify({ device: "disk1", "snapshot-file": hostile, format: "qcow2", mode: "existing" })}`,
    ]);
    expect(f.rec.runs).toEqual([]);
    expect(f.rec.kills).toEqual([]);
  });

  /** f's QMP with block jobs: query-block-jobs answers `jobs` (each call may move them on: `step`), block-stream adds one, job-dismiss drops it. */
  const withJobs = (f: ReturnType<typeof fakeHost>, o: { jobs?: { device: string; status: string; error?: string }[]; step?: (jobs: { device: string; status: string; error?: string }[]) => void; refuse?: string } = {}) => {
    const jobs = o.jobs ?? [];
    const command = f.qmp.command;
    f.qmp.command = async (sock, cmd, timeoutMs, args) => {
      const r = await command(sock, cmd, timeoutMs, args);
      if (cmd === "block-stream") {
        if (o.refuse) throw new Error(`QMP GenericError: ${o.refuse}`);
        jobs.push({ device: String(args!["job-id"]), status: "running" });
      }
      if (cmd === "block-job-cancel") for (const j of jobs) if (j.device === args!.device) j.status = "concluded";
      if (cmd === "job-dismiss") jobs.splice(jobs.findIndex((j) => j.device === args!.id), 1);
      if (cmd !== "query-block-jobs") return r;
      const now = structuredClone(jobs);
      o.step?.(jobs);
      return now;
    };
    return jobs;
  };
  const BASE = { path: "/v/it's; $(reboot)\n/system-t1b.img", name: "system-t1b.img" };
  const STREAM = `block-stream /v/abc123/api.sock ${JSON.stringify({ "job-id": "banger-stream-disk1", device: "disk1", base: BASE.path, "backing-file": "system-t1b.img", "auto-dismiss": false })}`;

  test("streamDisk: block-stream of drive disk<i> down to the base (path and backing name as data), its job looked at until it concludes, then dismissed", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    let polls = 0;
    withJobs(f, { step: (jobs) => { if (jobs[0] && ++polls === 3) jobs[0].status = "concluded"; } });
    f.rec.qmp.length = 0;
    f.rec.runs.length = 0;
    await d.streamDisk!(sampleVM(), handlesFor(r.pid, r.pidStartTime), 1, BASE);
    expect(f.rec.qmp.filter((q) => !q.startsWith("ping"))).toEqual([
      "query-block-jobs /v/abc123/api.sock",
      STREAM,
      "query-block-jobs /v/abc123/api.sock",
      "query-block-jobs /v/abc123/api.sock",
      "query-block-jobs /v/abc123/api.sock",
      "query-block-jobs /v/abc123/api.sock",
      `job-dismiss /v/abc123/api.sock {"id":"banger-stream-disk1"}`,
    ]);
    expect(f.rec.runs).toEqual([]);
  });

  test("streamDisk: a job that concludes with an error fails with it (dismissed); QEMU refusing the stream fails with its word; a job of ours a killed daemon left is waited for and dismissed first", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    const h = handlesFor(r.pid, r.pidStartTime);
    const jobs = withJobs(f, { step: (js) => { for (const j of js) if (j.status === "running") Object.assign(j, { status: "concluded", error: "No space left on device" }); } });
    await expect(d.streamDisk!(sampleVM(), h, 1, BASE)).rejects.toThrow("vm demo: streaming disk 1 down to system-t1b.img failed: No space left on device");
    expect(jobs).toEqual([]);

    const g = fakeHost();
    const dg = createQemuDriver(g.host, { accel: "tcg", qmp: g.qmp });
    const rg = await dg.launch(sampleVM(), BOOT);
    withJobs(g, { refuse: "Can't find 'x' in the backing chain" });
    await expect(dg.streamDisk!(sampleVM(), handlesFor(rg.pid, rg.pidStartTime), 1, BASE)).rejects.toThrow("Can't find 'x' in the backing chain");

    const k = fakeHost();
    const dk = createQemuDriver(k.host, { accel: "tcg", qmp: k.qmp });
    const rk = await dk.launch(sampleVM(), BOOT);
    withJobs(k, { jobs: [{ device: "banger-stream-disk1", status: "running" }], step: (js) => { for (const j of js) j.status = "concluded"; } });
    k.rec.qmp.length = 0;
    await dk.streamDisk!(sampleVM(), handlesFor(rk.pid, rk.pidStartTime), 1, BASE);
    expect(k.rec.qmp.filter((q) => !q.startsWith("ping"))).toEqual([
      "query-block-jobs /v/abc123/api.sock",
      "query-block-jobs /v/abc123/api.sock",
      `job-dismiss /v/abc123/api.sock {"id":"banger-stream-disk1"}`,
      STREAM,
      "query-block-jobs /v/abc123/api.sock",
      "query-block-jobs /v/abc123/api.sock",
      `job-dismiss /v/abc123/api.sock {"id":"banger-stream-disk1"}`,
    ]);
  });

  test("prepareSave first settles the disk jobs of ours a killed daemon left (a concluded one not dismissed still holds its drive, and the freeze's disk switch would be refused): each waited for and dismissed, with a line in the log; another's job is left alone", async () => {
    const f = fakeHost();
    const lines: string[] = [];
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp, log: (m) => lines.push(m) });
    const r = await d.launch(sampleVM(), BOOT);
    const jobs = withJobs(f, { jobs: [{ device: "banger-stream-disk0", status: "running" }, { device: "theirs", status: "running" }, { device: "banger-stream-disk1", status: "concluded", error: "Input/output error" }], step: (js) => { for (const j of js) if (j.device === "banger-stream-disk0") j.status = "concluded"; } });
    f.rec.qmp.length = 0;
    const p = await d.prepareSave!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/s1/state.mig");
    await p.abandon();
    expect(f.rec.qmp.filter((q) => q.startsWith("job-dismiss"))).toEqual([`job-dismiss /v/abc123/api.sock {"id":"banger-stream-disk0"}`, `job-dismiss /v/abc123/api.sock {"id":"banger-stream-disk1"}`]);
    expect(jobs).toEqual([{ device: "theirs", status: "running" }]);
    expect(lines).toEqual(["vm demo: a disk job a killed daemon left (banger-stream-disk0) ended; dismissed", "vm demo: a disk job a killed daemon left (banger-stream-disk1) failed: Input/output error; dismissed"]);
  });

  test("streamDisk cancelled (the operation's signal): block-job-cancel, then it fails once the job has concluded", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    const ac = new AbortController();
    withJobs(f, { step: () => ac.abort() });
    f.rec.qmp.length = 0;
    await expect(d.streamDisk!(sampleVM(), handlesFor(r.pid, r.pidStartTime), 1, BASE, ac.signal)).rejects.toThrow("streaming disk 1 down to system-t1b.img failed: cancelled");
    expect(f.rec.qmp.filter((q) => q.startsWith("block-job-cancel"))).toEqual([`block-job-cancel /v/abc123/api.sock {"device":"banger-stream-disk1"}`]);
  });

  test("switchDisk of a VM whose qemu is gone fails", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await expect(d.switchDisk!(sampleVM(), handlesFor(1, 1), 0, "/v/abc123/system.qcow2")).rejects.toThrow("QMP connection closed");
  });

  test("pause of a VM whose qemu is gone fails instead of pretending", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await expect(d.pause!(sampleVM(), emptyHandles())).rejects.toThrow();
  });
});

describe("qemu driver: state save and restore", () => {
  test("saveState of a VM launched without a recorded argv (an older daemon's): stop, then the whole stream to a temp (quoted for the shell) renamed into place", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    f.rec.writes.delete("/v/abc123/qemu-argv.json");
    f.rec.qmp.length = 0;
    const saved = await d.saveState!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/it's/state.mig");
    const calls = f.rec.qmp.filter((x) => !x.startsWith("ping"));
    expect(calls.slice(0, 3)).toEqual(["query-block-jobs /v/abc123/api.sock", "query-status /v/abc123/api.sock", "stop /v/abc123/api.sock"]);
    expect(calls[3]).toMatch(/^migrate-out \/v\/abc123\/api\.sock exec:cat > '\/snaps\/it'\\''s\/\.state\.mig\.tmp-\d+-[0-9a-f]+' && mv '\/snaps\/it'\\''s\/\.state\.mig\.tmp-\d+-[0-9a-f]+' '\/snaps\/it'\\''s\/state\.mig'$/);
    expect(calls).toHaveLength(4);
    expect(saved?.frozenMs).toBe(30);
  });

  test("prepareSave, while the VM runs: a receiver qemu (its argv, stand-in disks, port 0, RAM a shared memfd) up and listening for the stream; nothing stopped", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), { ...BOOT, netArgs: ["-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:2222-:22", "-device", "virtio-net-pci,netdev=net0"] });
    expect(JSON.parse(f.rec.writes.get("/v/abc123/qemu-argv.json")!)).toEqual(f.rec.spawns[0]!.args);
    f.rec.qmp.length = 0;
    f.rec.runs.length = 0;
    await d.prepareSave!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/s1/state.mig");
    // the saved VM's argv beside its state, for the QEMU that restores it (its devices: the agent's port)
    expect(f.rec.writes.get("/snaps/s1/qemu-argv.json")).toBe(f.rec.writes.get("/v/abc123/qemu-argv.json"));
    expect(f.rec.runs).toEqual([{ cmd: "truncate", args: ["-s", "1073741824", "/v/abc123/receiver-disk0.img"] }]);
    const rcv = f.rec.spawns[1]!;
    // under a watchdog, so a daemon killed meanwhile cannot leave it for ever
    expect([rcv.cmd, ...rcv.args.slice(0, 4)]).toEqual(["timeout", "-s", "KILL", "600", "/usr/bin/qemu-system-x86_64"]);
    expect(rcv.logPath).toBe("/v/abc123/receiver.log");
    expect(rcv.args).toContain("unix:/v/abc123/rcv.sock,server=on,wait=off");
    expect(rcv.args).not.toContain(QMP_NEEDLE);
    expect(rcv.args).toContain("id=disk0,file=/v/abc123/receiver-disk0.img,format=raw,if=none,cache=unsafe,discard=unmap");
    expect(rcv.args).toContain("user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22");
    // the agent's port is there for its state to load, on no FIFO of the VM's
    expect(rcv.args).toContain("virtserialport,bus=agentbus.0,chardev=agent,name=banger.agent");
    expect(rcv.args).toContain("null,id=agent");
    expect(rcv.args.join(" ")).not.toContain("/v/abc123/agent");
    expect(rcv.args.slice(-7)).toEqual(["-object", "memory-backend-memfd,id=pc.ram,size=256M,share=on", "-machine", "memory-backend=pc.ram", "-incoming", "defer", "-S"]);
    expect(f.rec.qmp.filter((x) => !x.startsWith("ping"))).toEqual([
      "query-block-jobs /v/abc123/api.sock",
      "query-block /v/abc123/api.sock",
      `migrate-incoming /v/abc123/rcv.sock ${JSON.stringify({ uri: "unix:/v/abc123/rin.sock" })}`,
    ]);
    expect(await d.runState!(sampleVM())).toBe("running");
  });

  test("saveState: the VM stopped and migrated straight into the receiver; finish, after the resume: the receiver saves device state only (x-ignore-shared), its memfd is copied sparse to memory.ram, it is killed", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    expect(d.liveSave).toBe(true);
    const r = await d.launch(sampleVM(), BOOT);
    f.rec.qmp.length = 0;
    f.rec.runs.length = 0;
    const saved = (await d.saveState!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/s1/state.mig"))!;
    const calls = () => f.rec.qmp.filter((x) => !x.startsWith("ping"));
    expect(calls().slice(3, 6)).toEqual(["query-status /v/abc123/api.sock", "stop /v/abc123/api.sock", "migrate-out /v/abc123/api.sock unix:/v/abc123/rin.sock x-ignore-shared=off,background-snapshot=off"]);
    expect(calls()).toHaveLength(6);
    // it returns with the VM stopped at the saved instant, frozen for the stream (30 ms of fake time)
    expect(await d.runState!(sampleVM())).toBe("paused");
    expect(saved.frozenMs).toBe(30);
    await d.resume!(sampleVM(), handlesFor(r.pid, r.pidStartTime));
    f.rec.qmp.length = 0;
    await saved.finish!();
    expect(calls()[0]).toBe("query-migrate /v/abc123/rcv.sock");
    expect(calls()[1]).toMatch(/^migrate-out \/v\/abc123\/rcv\.sock exec:cat > '\/snaps\/s1\/\.state\.mig\.tmp-[^']+' && mv '[^']+' '\/snaps\/s1\/state\.mig' x-ignore-shared=on$/);
    expect(calls()).toHaveLength(2);
    // the receiver's memfd (found among its open files) copied sparse to a temp renamed to the snapshot's RAM file, read where the receiver holds it
    const rcvQemu = r.pid + 2;
    expect(f.rec.runs[1]!.cmd).toBe("cp");
    expect(f.rec.runs[1]!.args.slice(0, 2)).toEqual(["--sparse=always", `/proc/${rcvQemu}/fd/12`]);
    expect(f.rec.runs[1]!.args[2]).toMatch(/^\/snaps\/s1\/\.memory\.ram\.tmp-/);
    expect(f.rec.renames).toEqual([`${f.rec.runs[1]!.args[2]} → /snaps/s1/memory.ram`]);
    expect(f.rec.runs).toHaveLength(2);
    // then the receiver (its qemu, then its watchdog) is killed, its sockets and stand-ins removed; the VM's qemu stays
    expect(f.rec.kills).toEqual([{ pid: rcvQemu, signal: "SIGKILL" }, { pid: r.pid + 1, signal: "SIGKILL" }]);
    expect([...f.procs.keys()]).toEqual([r.pid]);
    for (const x of ["/v/abc123/rcv.sock", "/v/abc123/rin.sock", "/v/abc123/receiver-disk0.img"]) expect(f.rec.removed).toContain(x);
    expect(f.rec.removed).not.toContain("/snaps/s1/memory.ram");
    // once only
    await saved.finish!();
    expect(calls()).toHaveLength(2);
  });

  test("save with runOn of a VM the caller stopped: background-snapshot on, migrate into the receiver, return once QEMU runs the guest again; finish waits for both ends of the stream", async () => {
    const { f, d, r, prepared, saved } = await backgroundSaved();
    const calls = () => f.rec.qmp.filter((x) => !x.startsWith("ping"));
    expect(calls()).toEqual([
      "query-status /v/abc123/api.sock",
      `migrate-set-capabilities /v/abc123/api.sock ${JSON.stringify({ capabilities: [{ capability: "x-ignore-shared", state: false }, { capability: "background-snapshot", state: true }] })}`,
      `migrate-set-parameters /v/abc123/api.sock ${JSON.stringify({ "max-bandwidth": 16 * 1024 ** 3 })}`,
      `migrate /v/abc123/api.sock ${JSON.stringify({ uri: "unix:/v/abc123/rin.sock" })}`,
      // never a stop nor a cont of its own: the guest runs again by QEMU's hand, and the driver waits for that
      "query-status /v/abc123/api.sock",
    ]);
    expect(await d.runState!(sampleVM())).toBe("running");
    expect(saved.frozenMs).toBe(3);
    f.rec.qmp.length = 0;
    await saved.finish!();
    expect(calls().slice(0, 2)).toEqual(["query-migrate /v/abc123/api.sock", "query-migrate /v/abc123/rcv.sock"]);
    expect(calls()[2]).toStartWith("migrate-out /v/abc123/rcv.sock ");
    expect([...f.procs.keys()]).toEqual([r.pid]);
    // nothing left to undo
    await prepared.abandon();
    expect(f.rec.removed).not.toContain("/snaps/s1/memory.ram");
  });

  test("save with runOn where QEMU refuses background-snapshot (a clone's RAM file): the stopped save into the receiver, background-snapshot set off", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    const h = handlesFor(r.pid, r.pidStartTime);
    await d.pause!(sampleVM(), h);
    f.set({ bgRefused: true });
    f.rec.qmp.length = 0;
    const saved = (await d.saveState!(sampleVM(), h, "/snaps/s1/state.mig", { runOn: true }))!;
    const calls = f.rec.qmp.filter((x) => !x.startsWith("ping") && !x.includes("rcv.sock") && !x.startsWith("query-block"));
    expect(calls[1]).toStartWith("migrate-set-capabilities ");
    expect(calls[2]).toBe("migrate-out /v/abc123/api.sock unix:/v/abc123/rin.sock x-ignore-shared=off,background-snapshot=off");
    expect(calls.some((c) => c.startsWith("migrate "))).toBe(false);
    expect(await d.runState!(sampleVM())).toBe("paused");
    expect(saved.frozenMs).toBe(30);
  });

  test("a receiver that does not come up fails the preparation, the VM untouched: nothing left running, its stand-ins removed", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    f.set({ spawn: "die" });
    f.rec.qmp.length = 0;
    const e = await d.prepareSave!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/s1/state.mig").catch((x: unknown) => x as BangerError);
    expect((e as BangerError).message).toMatch(/receiver qemu exited/);
    expect([...f.procs.keys()]).toEqual([r.pid]);
    expect(f.rec.qmp.filter((x) => x.startsWith("stop") || x.startsWith("migrate"))).toEqual([]);
    expect(f.rec.removed).toContain("/v/abc123/receiver-disk0.img");
    expect(f.rec.removed).toContain("/snaps/s1/memory.ram");
  });

  test("a snapshot that fails while the VM's RAM still streams into the receiver (background save): the receiver is killed only once the stream has ended, which QEMU 7.2 needs to lift the guest's write protection", async () => {
    const { f, d, r, prepared } = await backgroundSaved();
    const receiver = [...f.procs.values()].find((p) => p.cmdline[0]!.includes("qemu") && p.cmdline.includes("-incoming"))!;
    f.set({ vmMigrate: ["active", "active", "completed"] });
    f.rec.qmp.length = 0;
    const kill = f.host.procs.kill.bind(f.host.procs);
    f.host.procs.kill = (pid, signal) => {
      f.rec.qmp.push(`kill ${pid}`);
      return kill(pid, signal);
    };
    await prepared.abandon();
    const seen = f.rec.qmp.filter((x) => x.startsWith("query-migrate /v/abc123/api.sock") || x.startsWith("kill "));
    expect(seen.slice(0, 4)).toEqual([...Array(3).fill("query-migrate /v/abc123/api.sock"), `kill ${receiver.pid}`]);
    expect([...f.procs.keys()]).toEqual([r.pid]);
  });

  test("guestStuck: a background save that failed or was cancelled, the capability still on and a thread waiting in handle_userfault twice 100 ms apart, is a guest that cannot run again; anything short of that is not", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    const h = handlesFor(r.pid, r.pidStartTime);
    f.set({ vmMigrate: ["failed"], bgOn: true, wchans: [r.pid, ["do_sys_poll", "futex_wait_queue", "handle_userfault"]] });
    const t0 = f.elapsed();
    expect(await d.guestStuck!(sampleVM(), h)).toBe("its guest cannot run again: a background state save failed and QEMU left its memory write-protected");
    expect(f.elapsed() - t0).toBe(100);
    f.set({ vmMigrate: ["cancelled"] });
    expect(await d.guestStuck!(sampleVM(), h)).toContain("a background state save cancelled");
    // a save that completed, a save that was not a background one, or no thread blocked on the protection
    f.set({ vmMigrate: ["completed"] });
    expect(await d.guestStuck!(sampleVM(), h)).toBeNull();
    f.set({ vmMigrate: ["failed"], bgOn: false });
    expect(await d.guestStuck!(sampleVM(), h)).toBeNull();
    f.set({ bgOn: true, wchans: [r.pid, ["do_sys_poll", "futex_wait_queue", "0"]] });
    expect(await d.guestStuck!(sampleVM(), h)).toBeNull();
    // QMP no longer answering (its main loop blocked as well): the threads alone decide
    f.procs.delete(r.pid);
    expect(await d.guestStuck!(sampleVM(), h)).toBeNull();
    f.set({ wchans: [r.pid, ["handle_userfault", "futex_wait_queue", "handle_userfault"]] });
    expect(await d.guestStuck!(sampleVM(), h)).toBe("its guest cannot run again: QEMU stopped answering, blocked on write-protected memory (a background state save cut midway)");
  });

  test("abandon before the save (the snapshot failed in between): the receiver killed and waited for, its files removed; the VM never stopped", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    const prepared = await d.prepareSave!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/s1/state.mig");
    expect(f.procs.size).toBe(3);
    await prepared.abandon();
    expect([...f.procs.keys()]).toEqual([r.pid]);
    for (const x of ["/v/abc123/rcv.sock", "/v/abc123/rin.sock", "/v/abc123/receiver-disk0.img"]) expect(f.rec.removed).toContain(x);
    expect(f.rec.qmp.filter((x) => x.startsWith("stop") || x.startsWith("migrate "))).toEqual([]);
  });

  test("a receiver whose RAM cannot be copied fails the snapshot's finish: memory.ram removed, the receiver killed", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), BOOT);
    const saved = (await d.saveState!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/s1/state.mig"))!;
    // the receiver's qemu vanishes under it (its watchdog stays, to be killed)
    f.procs.delete(r.pid + 2);
    await expect(saved.finish!()).rejects.toThrow(/gone before its RAM was copied/);
    expect(f.rec.removed).toContain("/snaps/s1/memory.ram");
    expect([...f.procs.keys()]).toEqual([r.pid]);
  });

  test("a paused VM saved twice (QEMU leaves it in postmigrate after the first, and refuses a second migration from there): run for an instant (cont, stop) before the second, said in the log; the first as before", async () => {
    const lines: string[] = [];
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp, log: (l) => lines.push(l) });
    const r = await d.launch(sampleVM(), BOOT);
    const h = handlesFor(r.pid, r.pidStartTime);
    await d.pause!(sampleVM(), h);
    for (const [i, path] of ["/snaps/p1/state.mig", "/snaps/p2/state.mig"].entries()) {
      f.rec.qmp.length = 0;
      const saved = (await d.saveState!(sampleVM(), h, path))!;
      await saved.finish!();
      const vmCalls = f.rec.qmp.filter((x) => x.includes("/v/abc123/api.sock") && /^(cont|stop|migrate-out) /.test(x)).map((x) => x.split(" ")[0]);
      expect([i, vmCalls]).toEqual([i, i === 0 ? ["migrate-out"] : ["cont", "stop", "migrate-out"]]);
      expect(await d.runState!(sampleVM())).toBe("paused");
    }
    expect(lines.filter((l) => l.includes("run for an instant"))).toEqual(["vm demo: stopped since its last save, which QEMU will not save again as it is: run for an instant and stopped"]);
  });

  test("saveState of a VM on a tap: the whole stream, no receiver (virtio-net's state needs the tap the VM holds)", async () => {
    const f = fakeHost();
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    const r = await d.launch(sampleVM(), { ...BOOT, nics: [{ tap: "bt-abc123", mac: "52:54:00:00:00:01" }] });
    f.rec.qmp.length = 0;
    const saved = (await d.saveState!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/s1/state.mig"))!;
    expect(saved.frozenMs).toBe(30);
    expect(f.rec.spawns).toHaveLength(1);
    const calls = f.rec.qmp.filter((x) => !x.startsWith("ping"));
    expect(calls.slice(0, 3)).toEqual(["query-block-jobs /v/abc123/api.sock", "query-status /v/abc123/api.sock", "stop /v/abc123/api.sock"]);
    expect(calls[3]).toMatch(/^migrate-out \/v\/abc123\/api\.sock exec:cat > .* '\/snaps\/s1\/state\.mig'$/);
    // the finish, the VM running again: the guest's RAM split out of the stream into memory.ram (a sparse file of
    // the VM's RAM size, its pages written where they belong), then the stream rewritten to go with it
    const w = wholeStream();
    const written: string[] = [];
    Object.assign(f.host.fs, {
      stat: async () => ({ size: w.bytes.length }),
      readBytes: async () => w.bytes,
      writeRanges: async (p: string, ranges: { offset: number; data: Uint8Array }[]) => void written.push(`${p}: ${ranges.map((x) => `${x.offset.toString(16)}=${x.data[0]}x${x.data.length}`).join(" ")}`),
      writeAtomic: async (p: string, d: Uint8Array) => void written.push(`${p} ← ${d.length === w.split.length && d.every((b, i) => b === w.split[i]) ? "the split stream" : "something else"}`),
    });
    f.rec.runs.length = 0;
    await saved.finish!();
    expect(f.rec.runs).toEqual([{ cmd: "truncate", args: ["-s", String(256 << 20), "/snaps/s1/memory.ram"] }]);
    expect(written).toEqual(["/snaps/s1/memory.ram: 3000=1x4096 4000=2x4096 a000=90x4096 5000=3x4096", "/snaps/s1/state.mig ← the split stream"]);
    await saved.finish!();
    expect(written).toHaveLength(2);
  });

  test("a whole stream the split does not take stays whole: no memory.ram, the reason in the log", async () => {
    const f = fakeHost();
    const log: string[] = [];
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp, log: (l) => log.push(l) });
    const r = await d.launch(sampleVM(), { ...BOOT, nics: [{ tap: "bt-abc123", mac: "52:54:00:00:00:01" }] });
    const saved = (await d.saveState!(sampleVM(), handlesFor(r.pid, r.pidStartTime), "/snaps/s1/state.mig"))!;
    Object.assign(f.host.fs, { stat: async () => ({ size: 100 }), readBytes: async () => mappedStream().bytes });
    f.rec.runs.length = 0;
    await saved.finish!();
    expect(f.rec.runs).toEqual([]);
    expect(log).toEqual(["vm demo: its snapshot keeps its RAM in its stream: the configuration names capabilities (already x-ignore-shared?), or RAM's section is not next"]);
  });

  test("a VM running on a snapshot's RAM file mapped private is saved by delta: prepared, a sparse copy of that file; frozen, its device state and the pages it wrote over the copy; finished, the device state spliced into that snapshot's stream. No receiver", async () => {
    const f = fakeHost({ files: ["/img/vmlinuz", "/img/initrd.img", "/v/abc123/system.img", "/snap/state.mig", "/snap/memory.ram"] });
    const log: string[] = [];
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp, log: (l) => log.push(l) });
    const links: string[] = [];
    Object.assign(f.host.fs, { link: async (from: string, to: string) => void links.push(`${from} → ${to}`) });
    const r = await d.launch(sampleVM(), BOOT, { restoreFrom: "/snap/state.mig" });
    // the snapshot's stream and RAM file linked into the VM's dir first, so that a `snapshot rm` leaves them to it
    expect(links).toEqual(["/snap/state.mig → /v/abc123/restored.mig", "/snap/memory.ram → /v/abc123/restored.ram"]);
    const cmdline = f.procs.get(r.pid)!.cmdline;
    expect(cmdline).toContain("memory-backend-file,id=pc.ram,size=256M,mem-path=/v/abc123/restored.ram,share=off");
    // the process as the kernel shows it: the RAM file mapped in two pieces, and pagemap saying which pages it wrote
    const RAM = 0x7f0000000000;
    const half = 128 << 20;
    const maps = `${RAM.toString(16)}-${(RAM + half).toString(16)} rw-p 00000000 fe:01 7 /v/abc123/restored.ram\n${(RAM + half).toString(16)}-${(RAM + 2 * half).toString(16)} rw-p 08000000 fe:01 7 /v/abc123/restored.ram\n`;
    const pagemaps = new Map<number, Uint8Array>();
    const written = (pages: number[]) => {
      const b = new Uint8Array((half / 4096) * 8);
      for (const i of pages) b[i * 8 + 7] = 0x80; // present, not a file page
      return b;
    };
    pagemaps.set((RAM / 4096) * 8, written([0, 1, 2]));
    pagemaps.set(((RAM + half) / 4096) * 8, written([5]));
    const mapped = mappedStream();
    const reads: string[] = [];
    const copies: string[] = [];
    let deviceFile = "";
    Object.assign(f.host.fs, {
      readBytes: async (p: string) => (p === "/v/abc123/restored.mig" ? mapped.bytes : p === deviceFile ? deviceStream(NEW_DEVICES) : new Uint8Array()),
      readText: async (p: string) => (p === `/proc/${r.pid}/maps` ? maps : (f.rec.writes.get(p) ?? null)),
      readRange: async (p: string, offset: number, length: number) => {
        reads.push(`${p} ${offset.toString(16)}+${length}`);
        return p.endsWith("/pagemap") ? pagemaps.get(offset)!.subarray(0, length) : new Uint8Array(length);
      },
      copyRanges: async (from: string, to: string, ranges: { from: number; to: number; length: number }[]) => {
        copies.push(`${from} → ${to}: ${ranges.map((x) => `${x.from.toString(16)}+${x.length}@${x.to.toString(16)}`).join(" ")}`);
        return 0;
      },
      writeFile: async (p: string, data: Uint8Array) => void f.rec.writes.set(p, [...data].join(",")),
    });
    f.rec.qmp.length = 0;
    f.rec.runs.length = 0;
    const h = handlesFor(r.pid, r.pidStartTime);
    const prepared = await d.prepareSave!(sampleVM(), h, "/snaps/s1/state.mig");
    deviceFile = "/snaps/s1/state.mig.devices";
    // made ready while it runs: the copy of the file it maps, and a look at its memory (readable); nothing stopped, no process started
    expect(f.rec.runs).toEqual([{ cmd: "cp", args: ["--sparse=always", "/v/abc123/restored.ram", "/snaps/s1/memory.ram"] }]);
    expect(reads).toEqual([`/proc/${r.pid}/mem ${RAM.toString(16)}+1`]);
    expect(f.rec.spawns).toHaveLength(1);
    await d.pause!(sampleVM(), h);
    f.rec.qmp.length = 0;
    const saved = (await prepared.save({ runOn: true }))!;
    expect(f.rec.qmp.filter((x) => !x.startsWith("ping"))).toEqual([
      "query-status /v/abc123/api.sock",
      `xen-save-devices-state /v/abc123/api.sock ${JSON.stringify({ filename: "/snaps/s1/state.mig.devices", live: false })}`,
    ]);
    // the pages it wrote, read from its memory where each piece of the file is mapped, written where they are in the file
    expect(copies).toEqual([
      `/proc/${r.pid}/mem → /snaps/s1/memory.ram: ${RAM.toString(16)}+12288@0`,
      `/proc/${r.pid}/mem → /snaps/s1/memory.ram: ${(RAM + half + 5 * 4096).toString(16)}+4096@${(half + 5 * 4096).toString(16)}`,
    ]);
    expect(log).toEqual(["vm demo: RAM saved by delta: 4 pages (0.0 MiB) written since it mapped /v/abc123/restored.ram"]);
    expect(await d.runState!(sampleVM())).toBe("paused");
    await saved.finish!();
    expect(f.rec.writes.get("/snaps/s1/state.mig")).toBe([...mapped.bytes.subarray(0, mapped.ramEnd), ...NEW_DEVICES, ...mapped.description].join(","));
    expect(f.rec.removed).toContain("/snaps/s1/state.mig.devices");
    expect(f.rec.removed).not.toContain("/snaps/s1/memory.ram");
    expect(f.rec.spawns).toHaveLength(1);
    // once: again (a snapshot that failed later, undoing) does nothing
    const removed = f.rec.removed.length;
    await saved.finish!();
    expect(f.rec.removed).toHaveLength(removed);
  });

  test("by delta only where the mapped snapshot's stream can be spliced: another stream (or none) is a receiver's save as before, and a failed save removes what it made", async () => {
    const f = fakeHost({ files: ["/img/vmlinuz", "/img/initrd.img", "/v/abc123/system.img", "/snap/state.mig", "/snap/memory.ram"] });
    const log: string[] = [];
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp, log: (l) => log.push(l) });
    // links refused (the snapshots on another filesystem): the snapshot's own files, and the stream beside its RAM file
    Object.assign(f.host.fs, { link: async () => Promise.reject(Object.assign(new Error("EXDEV"), { code: "EXDEV" })) });
    const r = await d.launch(sampleVM(), BOOT, { restoreFrom: "/snap/state.mig" });
    expect(f.procs.get(r.pid)!.cmdline).toContain("memory-backend-file,id=pc.ram,size=256M,mem-path=/snap/memory.ram,share=off");
    const read: string[] = [];
    Object.assign(f.host.fs, { readBytes: async (p: string) => (read.push(p), mappedStream({ ignoreShared: false }).bytes) });
    const h = handlesFor(r.pid, r.pidStartTime);
    const prepared = await d.prepareSave!(sampleVM(), h, "/snaps/s1/state.mig");
    expect(read).toEqual(["/snap/state.mig"]);
    expect(log).toEqual(["vm demo: its RAM is saved whole, not by delta: the snapshot's stream was not saved with x-ignore-shared"]);
    expect(f.rec.spawns[1]!.cmd).toBe("timeout");
    await prepared.abandon();

    const maps = "7f0000000000-7f0010000000 rw-p 00000000 fe:01 7 /snap/memory.ram\n";
    Object.assign(f.host.fs, {
      readBytes: async () => mappedStream().bytes,
      readText: async (p: string) => (p.endsWith("/maps") ? maps : (f.rec.writes.get(p) ?? null)),
      readRange: async (_p: string, _o: number, length: number) => new Uint8Array(length),
    });
    const spawned = f.rec.spawns.length;
    f.rec.removed.length = 0;
    const delta = await d.prepareSave!(sampleVM(), h, "/snaps/s2/state.mig");
    expect(f.rec.spawns).toHaveLength(spawned);
    const failing = f.qmp.command;
    f.qmp.command = async (sock, command, t, args) => {
      if (command === "xen-save-devices-state") throw new Error("qemu: IO error");
      return failing(sock, command, t, args);
    };
    await expect(delta.save({ runOn: true })).rejects.toThrow("IO error");
    expect(f.rec.removed).toEqual(["/snaps/s2/memory.ram", "/snaps/s2/state.mig.devices"]);
  });

  test("launch with restoreFrom: -incoming defer -S, migrate-incoming from the file, then cont; a missing file kills the new qemu", async () => {
    const f = fakeHost({ files: ["/img/vmlinuz", "/img/initrd.img", "/v/abc123/system.img", "/snap/state.mig"] });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await d.launch(sampleVM(), BOOT, { restoreFrom: "/snap/state.mig" });
    const args = f.rec.spawns[0]!.args;
    expect(args.slice(-3)).toEqual(["-incoming", "defer", "-S"]);
    expect(f.rec.qmp.filter((x) => !x.startsWith("ping"))).toEqual(["migrate-in /v/abc123/api.sock exec:cat '/snap/state.mig'", "cont /v/abc123/api.sock"]);
    expect(args.join(" ")).not.toContain("memory-backend");
    const g = fakeHost();
    const e = await createQemuDriver(g.host, { accel: "tcg", qmp: g.qmp }).launch(sampleVM(), BOOT, { restoreFrom: "/snap/none.mig" }).catch((x: unknown) => x as BangerError);
    expect((e as BangerError).code).toBe("E_NOT_FOUND");
    expect(g.rec.kills.map((k) => k.signal)).toEqual(["SIGKILL"]);
    expect(g.procs.size).toBe(0);
  });

  test("the agents' ports: a boot always gets both, on new FIFOs made first; a restore exactly those the saved VM's argv beside the state had", async () => {
    const AGENT = "virtserialport,bus=agentbus.0,chardev=agent,name=banger.agent";
    const EXEC = "virtserialport,bus=agentbus.0,chardev=exec,name=banger.exec";
    const f = fakeHost({ files: ["/img/vmlinuz", "/img/initrd.img", "/v/abc123/system.img", "/v/abc123/agent.in"] });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await d.launch(sampleVM(), BOOT);
    expect(f.rec.runs).toEqual([{ cmd: "mkfifo", args: ["-m", "600", "/v/abc123/agent.in", "/v/abc123/agent.out", "/v/abc123/exec.in", "/v/abc123/exec.out"] }]);
    // what an earlier qemu left is removed first, and the FIFOs exist before qemu opens them
    expect(f.rec.removed).toContain("/v/abc123/agent.in");
    const args = f.rec.spawns[0]!.args;
    expect(args.slice(args.indexOf("virtio-rng-pci") + 1, args.indexOf("-qmp"))).toEqual(["-device", "virtio-serial-pci,id=agentbus", "-chardev", "pipe,id=agent,path=/v/abc123/agent", "-device", AGENT, "-chardev", "pipe,id=exec,path=/v/abc123/exec", "-device", EXEC]);
    const restoreWith = async (saved: string[] | null) => {
      const g = fakeHost({ files: ["/img/vmlinuz", "/img/initrd.img", "/v/abc123/system.img", "/snap/state.mig"] });
      if (saved) g.rec.writes.set("/snap/qemu-argv.json", JSON.stringify(saved));
      await createQemuDriver(g.host, { accel: "tcg", qmp: g.qmp }).launch(sampleVM(), BOOT, { restoreFrom: "/snap/state.mig" });
      const a = g.rec.spawns[0]!.args;
      return { agent: a.includes(AGENT), exec: a.includes(EXEC), fifos: g.rec.runs.filter((r) => r.cmd === "mkfifo").flatMap((r) => r.args.slice(2)) };
    };
    expect(await restoreWith(args)).toEqual({ agent: true, exec: true, fifos: ["/v/abc123/agent.in", "/v/abc123/agent.out", "/v/abc123/exec.in", "/v/abc123/exec.out"] });
    // a snapshot of a VM launched before the exec agent's port: the guest agent's alone
    const agentOnly = args.slice(0, args.indexOf("pipe,id=exec,path=/v/abc123/exec") - 1);
    expect(await restoreWith(agentOnly)).toEqual({ agent: true, exec: false, fifos: ["/v/abc123/agent.in", "/v/abc123/agent.out"] });
    // an older snapshot (no argv beside it), or one of a VM launched without the ports: none
    expect(await restoreWith(null)).toEqual({ agent: false, exec: false, fifos: [] });
    expect(await restoreWith(args.filter((a) => a !== AGENT && a !== EXEC))).toEqual({ agent: false, exec: false, fifos: [] });
  });

  test("launch from a snapshot with memory.ram: the file mapped private (share=off), device state loaded with x-ignore-shared, then cont", async () => {
    const f = fakeHost({ files: ["/img/vmlinuz", "/img/initrd.img", "/v/abc123/system.img", "/snap/state.mig", "/snap/memory.ram"] });
    const d = createQemuDriver(f.host, { accel: "tcg", qmp: f.qmp });
    await d.launch(sampleVM(), BOOT, { restoreFrom: "/snap/state.mig" });
    const args = f.rec.spawns[0]!.args;
    expect(args.slice(-7)).toEqual(["-object", "memory-backend-file,id=pc.ram,size=256M,mem-path=/snap/memory.ram,share=off", "-machine", "memory-backend=pc.ram", "-incoming", "defer", "-S"]);
    expect(f.rec.qmp.filter((x) => !x.startsWith("ping"))).toEqual(["migrate-in /v/abc123/api.sock exec:cat '/snap/state.mig' x-ignore-shared=on", "cont /v/abc123/api.sock"]);
    // what a later snapshot's receiver starts from: the argv without the restore's own options
    const recorded = JSON.parse(f.rec.writes.get("/v/abc123/qemu-argv.json")!) as string[];
    expect(recorded).toEqual(args.slice(0, -7));
  });
});
