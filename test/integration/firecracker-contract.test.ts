/**
 * The Firecracker driver against Firecracker's published API (v1.16.1), as
 * far as a machine without usable KVM can take it: the real driver, the real
 * host (processes, files, unix sockets) and a fake `firecracker` that loads
 * the spec YAML and refuses whatever the spec does not allow.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError } from "../../src/shared/errors.ts";
import { emptyHandles, type VMHandles, type VMRecord } from "../../src/shared/model.ts";
import { createHost } from "../../src/host/index.ts";
import type { Host, SSHDialer } from "../../src/host/types.ts";
import { createUnixHttp } from "../../src/host/unix-http.ts";
import type { BootConfig } from "../../src/vmm/driver.ts";
import { FirecrackerApiError, firecrackerApi } from "../../plugins/firecracker/api.ts";
import { fcConfigCalls } from "../../plugins/firecracker/config.ts";
import { createFirecrackerDriver } from "../../plugins/firecracker/driver.ts";
import { loadSpec, SPEC_SHA256, specSha256, validateRequest } from "../helpers/fc-spec.ts";

const FAKE = join(import.meta.dir, "..", "fixtures", "fake-firecracker.ts");
const noSSH: SSHDialer = { dial: () => Promise.reject(new Error("no ssh in this test")) };

let root: string;
let wrapper: string;
let host: Host;
const spawned: number[] = [];

beforeAll(() => {
  // short: unix socket paths are limited to 107 bytes
  root = mkdtempSync(join(tmpdir(), "bfc-"));
  wrapper = join(root, "firecracker");
  // stands in for the firecracker binary: the driver runs it exactly as it would run the real one
  writeFileSync(wrapper, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(FAKE)} "$@"\n`);
  chmodSync(wrapper, 0o755);
  const real = createHost(noSSH);
  // remember every process the driver starts, so the test can clean up by pid
  host = { ...real, exec: { ...real.exec, spawnDetached: async (c, a, o) => { const pid = await real.exec.spawnDetached(c, a, o); spawned.push(pid); return pid; } } };
});

afterEach(() => {
  delete process.env.FAKE_FC_FAULT;
  delete process.env.FAKE_FC_IGNORE_CAD;
});

afterAll(() => {
  for (const pid of spawned) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  rmSync(root, { recursive: true, force: true });
});

let n = 0;
function world(): { vm: VMRecord; boot: BootConfig; dir: string } {
  const id = `fc${++n}`;
  const dir = join(root, id);
  const img = join(root, "img");
  mkdirSync(dir, { recursive: true });
  mkdirSync(img, { recursive: true });
  for (const f of ["vmlinuz", "vmlinux", "initrd.img"]) writeFileSync(join(img, f), f);
  writeFileSync(join(dir, "seed.cpio"), "seed");
  writeFileSync(join(dir, "system.img"), "");
  writeFileSync(join(dir, "work.img"), "");
  const vm: VMRecord = {
    id,
    name: `vm-${id}`,
    spec: { image: "default", cpus: 2, memoryMiB: 256, diskMiB: 0, workDiskMiB: 64, driver: "firecracker", storage: "copy" },
    runtime: {
      state: "starting", guestIP: "", apiSockPath: join(dir, "api.sock"), vsockPath: "", vsockCID: 0,
      logPath: join(dir, "serial.log"), metricsPath: "", dnsName: "", vmDir: dir, systemOverlay: join(dir, "system.img"),
      workDiskPath: join(dir, "work.img"), lastError: "", sshHost: "", sshPort: 0,
    },
    createdAt: "", updatedAt: "",
  };
  const boot: BootConfig = {
    kernelPath: join(img, "vmlinuz"),
    initrdPaths: [join(img, "initrd.img"), join(dir, "seed.cpio")],
    kernelArgs: ["banger.hostname=x"],
    disks: [{ path: join(dir, "system.img"), format: "raw" }, { path: join(dir, "work.img"), format: "raw" }],
    netArgs: [],
    nics: [{ tap: "tap-bg0", mac: "02:fc:00:00:00:01" }],
  };
  return { vm, boot, dir };
}

function recorded(dir: string): { method: string; path: string; body?: Record<string, unknown>; status: number; fault?: string }[] {
  const f = join(dir, "fake-fc.requests.jsonl");
  if (!existsSync(f)) return [];
  return readFileSync(f, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

function driver(over: Parameters<typeof createFirecrackerDriver>[1] = {}) {
  return createFirecrackerDriver(host, { binary: wrapper, launchTimeoutMs: 20_000, exitWaitMs: 5000, ...over });
}

async function caughtErr(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a rejection");
}

async function gone(pid: number, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!(await host.procs.info(pid))) return true;
    await Bun.sleep(20);
  }
  return false;
}

describe("the spec copy", () => {
  test("is byte for byte the published v1.16.1 spec (sha256 recorded here)", () => {
    expect(specSha256()).toBe(SPEC_SHA256);
    const spec = loadSpec();
    expect(spec.swagger).toBe("2.0");
    expect(spec.info.version).toBe("1.16.1");
    expect(Object.keys(spec.paths).length).toBe(26);
  });
});

describe("the validator refuses what the real Firecracker refuses", () => {
  const spec = loadSpec();
  const put = (path: string, body: unknown) => validateRequest(spec, "PUT", path, JSON.stringify(body));

  test("an unknown field → 400 naming it", () => {
    const v = put("/drives/rootfs", { drive_id: "rootfs", path_on_host: "/x", is_root_device: true, is_read_only: false, bogus: 1 });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.fault).toContain("unknown field `bogus`");
  });

  test("missing required fields, wrong types, enum values, ranges", () => {
    const cases: [string, unknown, string][] = [
      ["/drives/rootfs", { drive_id: "rootfs" }, "missing field `is_root_device`"],
      ["/machine-config", { vcpu_count: "2", mem_size_mib: 256 }, "invalid type: string, expected integer"],
      ["/machine-config", { vcpu_count: 33, mem_size_mib: 256 }, "above the maximum 32"],
      ["/actions", { action_type: "Reboot" }, "unknown variant"],
      ["/vsock", { guest_cid: 2, uds_path: "/x" }, "below the minimum 3"],
      ["/boot-source", { boot_args: "x" }, "missing field `kernel_image_path`"],
      ["/logger", { level: "Verbose" }, "unknown variant"],
    ];
    for (const [path, body, want] of cases) {
      const v = put(path, body);
      expect(v.ok).toBe(false);
      if (!v.ok) expect(v.fault).toContain(want);
    }
  });

  test("ids: the pattern, and the body id must equal the path id", () => {
    const bad = put("/drives/root-fs", { drive_id: "root-fs", path_on_host: "/x", is_root_device: true, is_read_only: false });
    expect(bad.ok).toBe(false);
    const mismatch = put("/network-interfaces/eth0", { iface_id: "eth1", host_dev_name: "tap0" });
    expect(mismatch.ok).toBe(false);
    if (!mismatch.ok) expect(mismatch.fault).toContain("does not match");
  });

  test("unknown paths and methods → 400; a valid request passes", () => {
    expect(validateRequest(spec, "PUT", "/no-such-thing", "{}").ok).toBe(false);
    expect(validateRequest(spec, "DELETE", "/drives/rootfs", "").ok).toBe(false);
    expect(validateRequest(spec, "GET", "/", "").ok).toBe(true);
    expect(put("/network-interfaces/eth0", { iface_id: "eth0", host_dev_name: "tap0", guest_mac: "02:00:00:00:00:01" }).ok).toBe(true);
  });

  test("every call the driver plans is valid against the spec", () => {
    const { vm, boot } = world();
    const calls = fcConfigCalls(vm, boot, { fcLog: "/l", metrics: "/m", vsock: "/v.sock", initrd: "/i" });
    // logger, metrics, machine, boot source, 2 drives, 1 nic, vsock, InstanceStart
    expect(calls.length).toBe(9);
    for (const c of calls) {
      const v = validateRequest(spec, c.method, c.path, c.body === undefined ? "" : JSON.stringify(c.body));
      expect({ call: `${c.method} ${c.path}`, ok: v.ok, fault: v.ok ? "" : v.fault }).toEqual({ call: `${c.method} ${c.path}`, ok: true, fault: "" });
    }
  });
});

describe("the driver against the fake firecracker", () => {
  test("launch: the full call sequence, each answered 2xx by the spec'd fake; stop: SendCtrlAltDel, process gone, sockets removed", async () => {
    const { vm, boot, dir } = world();
    const d = driver();
    const t0 = performance.now();
    const launched = await d.launch(vm, boot);
    const launchMs = performance.now() - t0;
    const calls = recorded(dir);
    // readiness probes (GET /) until the socket answers, then the configuration, in order
    const probes = calls.findIndex((c) => c.method !== "GET");
    expect(probes).toBeGreaterThanOrEqual(1);
    expect(calls.slice(0, probes).every((c) => c.path === "/" && c.status === 200)).toBe(true);
    expect(calls.slice(probes).map((c) => `${c.method} ${c.path}`)).toEqual([
      "PUT /logger",
      "PUT /metrics",
      "PUT /machine-config",
      "PUT /boot-source",
      "PUT /drives/rootfs",
      "PUT /drives/disk1",
      "PUT /network-interfaces/eth0",
      "PUT /vsock",
      "PUT /actions",
    ]);
    expect(calls.every((c) => c.status >= 200 && c.status < 300)).toBe(true);
    const byPath = Object.fromEntries(calls.map((c) => [c.path, c.body]));
    expect(byPath["/machine-config"]).toEqual({ vcpu_count: 2, mem_size_mib: 256, smt: false });
    const bs = byPath["/boot-source"] as { kernel_image_path: string; boot_args: string; initrd_path: string };
    expect(bs.kernel_image_path).toBe(join(root, "img", "vmlinux"));
    expect(bs.boot_args.split(" ")).toEqual(expect.arrayContaining(["console=ttyS0", "reboot=k", "panic=1", "pci=off", "banger.hostname=x"]));
    // two initrds (image + seed) become one, in order
    expect(readFileSync(bs.initrd_path, "utf8")).toBe("initrd.imgseed");
    expect(byPath["/drives/rootfs"]).toMatchObject({ is_root_device: true, path_on_host: join(dir, "system.img") });
    expect(byPath["/drives/disk1"]).toMatchObject({ is_root_device: false, path_on_host: join(dir, "work.img") });
    expect(byPath["/network-interfaces/eth0"]).toEqual({ iface_id: "eth0", host_dev_name: "tap-bg0", guest_mac: "02:fc:00:00:00:01" });
    expect(byPath["/actions"]).toEqual({ action_type: "InstanceStart" });
    expect(readFileSync(join(dir, "serial.log"), "utf8")).toContain(`fake firecracker banger-${vm.id}: guest booted`);
    console.log(`fake firecracker launch + ${calls.length} API calls: ${launchMs.toFixed(0)} ms`);

    expect(await d.apiAnswers(vm)).toBe(true);
    expect(await d.findProcess(vm)).toEqual({ pid: launched.pid, startTime: launched.pidStartTime });

    const handles: VMHandles = { ...emptyHandles(), pid: launched.pid, pidStartTime: launched.pidStartTime };
    const t1 = performance.now();
    await d.stop(vm, handles, 5000);
    console.log(`stop by SendCtrlAltDel: ${(performance.now() - t1).toFixed(0)} ms`);
    const last = recorded(dir).at(-1)!;
    expect([last.method, last.path, last.body, last.status]).toEqual(["PUT", "/actions", { action_type: "SendCtrlAltDel" }, 204]);
    expect(await host.procs.info(launched.pid)).toBeNull();
    // the fake, like the real one, left its socket behind; the driver removed it
    expect(existsSync(vm.runtime.apiSockPath)).toBe(false);
    expect(await d.apiAnswers(vm)).toBe(false);
  }, 60_000);

  test("pause/resume: PATCH /vm Paused then Resumed, each a 204 from the spec'd fake; runState reads GET / (InstanceInfo.state)", async () => {
    const { vm, boot, dir } = world();
    const d = driver();
    const launched = await d.launch(vm, boot);
    const handles: VMHandles = { ...emptyHandles(), pid: launched.pid, pidStartTime: launched.pidStartTime };
    expect(await d.runState!(vm)).toBe("running");
    const before = recorded(dir).length;
    await d.pause!(vm, handles);
    expect(await d.runState!(vm)).toBe("paused");
    // a paused VMM still answers its API: the VM stays alive for reconcile
    expect(await d.apiAnswers(vm)).toBe(true);
    await d.resume!(vm, handles);
    expect(await d.runState!(vm)).toBe("running");
    const calls = recorded(dir).slice(before).filter((c) => c.method !== "GET");
    expect(calls.map((c) => [c.method, c.path, c.body, c.status])).toEqual([
      ["PATCH", "/vm", { state: "Paused" }, 204],
      ["PATCH", "/vm", { state: "Resumed" }, 204],
    ]);
    await d.kill(vm, handles);
  }, 60_000);

  test("snapshot and restore: PUT /snapshot/create of the paused VM, then a new firecracker with PUT /snapshot/load (mem_backend File, resume_vm, network and vsock overrides) instead of the boot calls", async () => {
    const { vm, boot, dir } = world();
    const d = driver();
    const first = await d.launch(vm, boot);
    const h1: VMHandles = { ...emptyHandles(), pid: first.pid, pidStartTime: first.pidStartTime };
    const state = join(dir, "state.mig");
    // Firecracker refuses to snapshot a running microVM: the engine pauses first
    const refused = await caughtErr(d.saveState!(vm, h1, state));
    expect(refused.message).toContain("Pause it first");
    await d.pause!(vm, h1);
    await d.saveState!(vm, h1, state);
    expect(readFileSync(state, "utf8")).toBe(`fake vmstate of banger-${vm.id}`);
    expect(readFileSync(`${state}.mem`, "utf8")).toBe(`fake memory of banger-${vm.id}`);
    const created = recorded(dir).filter((c) => c.path === "/snapshot/create");
    expect(created.map((c) => [c.body, c.status])).toEqual([
      [{ snapshot_type: "Full", snapshot_path: state, mem_file_path: `${state}.mem` }, 400],
      [{ snapshot_type: "Full", snapshot_path: state, mem_file_path: `${state}.mem` }, 204],
    ]);
    await d.kill(vm, h1);

    const before = recorded(dir).length;
    const second = await d.launch(vm, { ...boot, nics: [{ tap: "tap-bg9", mac: "02:fc:00:00:00:09" }] }, { restoreFrom: state });
    const calls = recorded(dir).slice(before).filter((c) => c.method !== "GET");
    expect(calls.map((c) => `${c.method} ${c.path} ${c.status}`)).toEqual(["PUT /logger 204", "PUT /metrics 204", "PUT /snapshot/load 204"]);
    expect(calls[2]!.body).toEqual({
      snapshot_path: state,
      mem_backend: { backend_type: "File", backend_path: `${state}.mem` },
      resume_vm: true,
      vsock_override: { uds_path: join(dir, "vsock.sock") },
      network_overrides: [{ iface_id: "eth0", host_dev_name: "tap-bg9" }],
    });
    expect(await d.runState!(vm)).toBe("running");
    await d.kill(vm, { ...emptyHandles(), pid: second.pid, pidStartTime: second.pidStartTime });
    // a state file that is not there: refused before any process starts
    expect((await caughtErr(d.launch(vm, boot, { restoreFrom: join(dir, "none.mig") }))).message).toBe(`saved state not found: ${join(dir, "none.mig")}`);
  }, 60_000);

  test("the spec refuses a pause state it does not name", () => {
    const spec = loadSpec();
    expect(validateRequest(spec, "PATCH", "/vm", JSON.stringify({ state: "Paused" })).ok).toBe(true);
    expect(validateRequest(spec, "PATCH", "/vm", JSON.stringify({ state: "Running" })).ok).toBe(false);
    expect(validateRequest(spec, "PATCH", "/vm", JSON.stringify({ state: "Paused", extra: 1 })).ok).toBe(false);
  });

  test("a 400 with fault_message: the user's error carries Firecracker's words; the process is killed and its socket removed", async () => {
    const { vm, boot, dir } = world();
    process.env.FAKE_FC_FAULT = "PUT /drives/rootfs=Unable to lock the block device: Resource temporarily unavailable";
    const e = await caughtErr(driver().launch(vm, boot));
    expect(e).toBeInstanceOf(FirecrackerApiError);
    expect((e as BangerError).code).toBe("E_BAD_REQUEST");
    expect(e.message).toBe("firecracker refused PUT /drives/rootfs (HTTP 400): Unable to lock the block device: Resource temporarily unavailable");
    expect(recorded(dir).at(-1)).toMatchObject({ path: "/drives/rootfs", status: 400 });
    expect(await driver().findProcess(vm)).toBeNull();
    expect(existsSync(vm.runtime.apiSockPath)).toBe(false);
  }, 60_000);

  test("a request with an unknown field, sent to the running fake, is refused with 400 and fault_message", async () => {
    const { vm, boot } = world();
    const d = driver();
    const launched = await d.launch(vm, boot);
    const api = firecrackerApi(createUnixHttp(), vm.runtime.apiSockPath, 5000);
    const e = await caughtErr(api.send({ method: "PUT", path: "/machine-config", body: { vcpu_count: 1, mem_size_mib: 128, turbo: true } }));
    expect(e).toBeInstanceOf(FirecrackerApiError);
    expect((e as FirecrackerApiError).status).toBe(400);
    expect((e as FirecrackerApiError).faultMessage).toContain("unknown field `turbo`");
    // and a pre-boot call after InstanceStart, which the spec marks "Pre-boot only"
    const late = await caughtErr(api.send({ method: "PUT", path: "/machine-config", body: { vcpu_count: 1, mem_size_mib: 128 } }));
    expect((late as FirecrackerApiError).faultMessage).toContain("after starting");
    await d.kill(vm, { ...emptyHandles(), pid: launched.pid, pidStartTime: launched.pidStartTime });
    expect(await host.procs.info(launched.pid)).toBeNull();
    expect(existsSync(vm.runtime.apiSockPath)).toBe(false);
  }, 60_000);

  test("a leftover API socket (from a killed firecracker) makes firecracker fail to start; the driver removes it first", async () => {
    const { vm, boot, dir } = world();
    const sock = vm.runtime.apiSockPath;
    // a firecracker killed with SIGKILL leaves its bound socket behind
    const pid = await host.exec.spawnDetached(wrapper, ["--api-sock", sock, "--id", "stale"], { logPath: join(dir, "stale.log") });
    for (let i = 0; i < 200 && !existsSync(sock); i++) await Bun.sleep(25);
    expect(existsSync(sock)).toBe(true);
    process.kill(pid, "SIGKILL");
    expect(await gone(pid)).toBe(true);
    expect(existsSync(sock)).toBe(true);

    // started by hand on that path, it refuses (as the real one does)
    const direct = await host.exec.run(wrapper, ["--api-sock", sock, "--id", "again"], { check: false });
    expect(direct.exitCode).not.toBe(0);
    expect(direct.stderr).toContain("Address in use");

    const d = driver();
    const launched = await d.launch(vm, boot);
    expect(await d.apiAnswers(vm)).toBe(true);
    await d.kill(vm, { ...emptyHandles(), pid: launched.pid, pidStartTime: launched.pidStartTime });
    expect(existsSync(sock)).toBe(false);
  }, 60_000);

  test("a guest that ignores Ctrl+Alt+Del is killed after the timeout", async () => {
    const { vm, boot, dir } = world();
    process.env.FAKE_FC_IGNORE_CAD = "1";
    const d = driver();
    const launched = await d.launch(vm, boot);
    const t0 = performance.now();
    await d.stop(vm, { ...emptyHandles(), pid: launched.pid, pidStartTime: launched.pidStartTime }, 400);
    const ms = performance.now() - t0;
    expect(ms).toBeGreaterThanOrEqual(400);
    expect(recorded(dir).at(-1)).toMatchObject({ path: "/actions", body: { action_type: "SendCtrlAltDel" }, status: 204 });
    expect(await host.procs.info(launched.pid)).toBeNull();
    expect(existsSync(vm.runtime.apiSockPath)).toBe(false);
  }, 60_000);

  test("a firecracker that dies at start: the error carries what it printed, nothing is left behind", async () => {
    const { vm, boot, dir } = world();
    const broken = join(root, "broken-firecracker");
    writeFileSync(broken, "#!/bin/sh\necho 'Error: KvmContext(Kvm(Error(13)))' >&2\nexit 1\n");
    chmodSync(broken, 0o755);
    const e = await caughtErr(createFirecrackerDriver(host, { binary: broken, launchTimeoutMs: 10_000 }).launch(vm, boot));
    expect((e as BangerError).code).toBe("E_INTERNAL");
    expect(e.message).toContain("firecracker exited during launch");
    expect(e.message).toContain("KvmContext(Kvm(Error(13)))");
    expect(existsSync(join(dir, "api.sock"))).toBe(false);
  });

  test("no vmlinux next to vmlinuz → one clear error before any process starts", async () => {
    const { vm, boot } = world();
    const e = await caughtErr(driver().launch(vm, { ...boot, kernelPath: join(root, "nokernel", "vmlinuz") }));
    expect((e as BangerError).code).toBe("E_NOT_FOUND");
    expect(e.message).toContain("uncompressed vmlinux");
    expect(existsSync(vm.runtime.apiSockPath)).toBe(false);
  });
});
