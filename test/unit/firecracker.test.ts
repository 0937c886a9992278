import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import firecrackerPlugin, { nextVsockCid } from "../../plugins/firecracker/index.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { emptyHandles, type VMRecord } from "../../src/shared/model.ts";
import type { PluginContext } from "../../src/core/plugin.ts";
import { createUnixHttp, formatHttpRequest, parseHttpResponse, type UnixHttp, type UnixHttpRequest } from "../../src/host/unix-http.ts";
import { chooseVmm } from "../../src/vmm/choose.ts";
import type { BootConfig, VMMDriver } from "../../src/vmm/driver.ts";
import { faultMessageOf, FirecrackerApiError, firecrackerApi } from "../../plugins/firecracker/api.ts";
import { fcConfigCalls, vmlinuxFor } from "../../plugins/firecracker/config.ts";
import { createFirecrackerDriver, fcInstanceId } from "../../plugins/firecracker/driver.ts";
import { caught, fakeDriver, fakeHost, fakeProcs, sampleVM, recordingOp } from "../helpers/fakes.ts";

/** A recording HTTP transport: every request in order; answers from a script. */
function recordingHttp(answer: (req: UnixHttpRequest) => { status: number; body?: string } = () => ({ status: 204 })) {
  const requests: { sock: string; method: string; path: string; body?: unknown; timeoutMs: number }[] = [];
  const http: UnixHttp = {
    async request(sock, req, timeoutMs) {
      requests.push({ sock, method: req.method, path: req.path, body: req.body === undefined ? undefined : JSON.parse(req.body), timeoutMs });
      const a = answer(req);
      return { status: a.status, body: a.body ?? "" };
    },
  };
  return { http, requests };
}

function fcVM(): VMRecord {
  const vm = sampleVM({ id: "0123abcd", name: "box", driver: "firecracker", vmsDir: "/v" });
  vm.spec.cpus = 2;
  vm.spec.memoryMiB = 512;
  return vm;
}

const BOOT: BootConfig = {
  kernelPath: "/img/vmlinuz",
  initrdPaths: ["/img/initrd.img"],
  kernelArgs: ["banger.x=1"],
  disks: [{ path: "/v/0123abcd/system.img", format: "raw" }],
  netArgs: [],
};

describe("HTTP/1.1 framing", () => {
  test("requests always carry Content-Length, counted in bytes", () => {
    const raw = formatHttpRequest({ method: "PUT", path: "/boot-source", body: '{"boot_args":"é"}' });
    expect(raw).toStartWith("PUT /boot-source HTTP/1.1\r\n");
    expect(raw).toContain("Content-Length: 18\r\n");
    expect(raw).toContain("Content-Type: application/json\r\n");
    expect(raw.endsWith('\r\n\r\n{"boot_args":"é"}')).toBe(true);
    expect(formatHttpRequest({ method: "GET", path: "/" })).toContain("Content-Length: 0\r\n");
  });

  test("responses: partial → null, Content-Length honoured, 204 without a body, chunked, truncation is an error", () => {
    const b = (s: string) => Buffer.from(s);
    expect(parseHttpResponse(b("HTTP/1.1 200 OK\r\nContent-Len"), false)).toBeNull();
    expect(parseHttpResponse(b("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"), false)).toBeNull();
    expect(parseHttpResponse(b("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabEXTRA"), false)).toEqual({ status: 200, body: "ab" });
    expect(parseHttpResponse(b("HTTP/1.1 204 No Content\r\nServer: Firecracker API\r\n\r\n"), false)).toEqual({ status: 204, body: "" });
    expect(parseHttpResponse(b("HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), false)).toEqual({ status: 400, body: "abcde" });
    expect(() => parseHttpResponse(b("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab"), true)).toThrow("truncated");
    expect(() => parseHttpResponse(b("SSH-2.0-x\r\n\r\n"), false)).toThrow("not an HTTP response");
  });
});

describe("the real unix-socket transport", () => {
  const dir = mkdtempSync(join(tmpdir(), "bfu-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("sends Content-Length and reads the answer", async () => {
    const sock = join(dir, "ok.sock");
    const seen: { len: string | null; body: string }[] = [];
    const server = Bun.serve({
      unix: sock,
      async fetch(req: Request) {
        seen.push({ len: req.headers.get("content-length"), body: await req.text() });
        return new Response(JSON.stringify({ fault_message: "nope" }), { status: 400 });
      },
    } as unknown as Parameters<typeof Bun.serve>[0]);
    try {
      const res = await createUnixHttp().request(sock, { method: "PUT", path: "/vsock", body: '{"a":1}' }, 2000);
      expect(res).toEqual({ status: 400, body: '{"fault_message":"nope"}' });
      expect(seen).toEqual([{ len: "7", body: '{"a":1}' }]);
    } finally {
      server.stop(true);
    }
  });

  test("a server that never answers → E_TIMEOUT after the timeout, not a hang", async () => {
    const sock = join(dir, "mute.sock");
    const server: Server = createServer(() => {}).listen(sock);
    await new Promise((r) => server.once("listening", r));
    try {
      const t0 = performance.now();
      const e = await caught(createUnixHttp().request(sock, { method: "GET", path: "/" }, 300));
      expect(e.code).toBe("E_TIMEOUT");
      expect(performance.now() - t0).toBeLessThan(2000);
    } finally {
      server.close();
    }
  });

  test("no socket → a rejection naming the error", async () => {
    await expect(createUnixHttp().request(join(dir, "none.sock"), { method: "GET", path: "/" }, 500)).rejects.toThrow("ENOENT");
  });
});

describe("the API client (recording transport)", () => {
  test("sends JSON to the VM's socket with the timeout; 204 → undefined, 200 → parsed", async () => {
    const r = recordingHttp((req) => (req.method === "GET" ? { status: 200, body: '{"state":"Running"}' } : { status: 204 }));
    const api = firecrackerApi(r.http, "/v/api.sock", 1234);
    expect(await api.send({ method: "PUT", path: "/actions", body: { action_type: "InstanceStart" } })).toBeUndefined();
    expect(await api.send({ method: "GET", path: "/" })).toEqual({ state: "Running" });
    expect(r.requests).toEqual([
      { sock: "/v/api.sock", method: "PUT", path: "/actions", body: { action_type: "InstanceStart" }, timeoutMs: 1234 },
      { sock: "/v/api.sock", method: "GET", path: "/", body: undefined, timeoutMs: 1234 },
    ]);
  });

  test("400 → FirecrackerApiError whose message is Firecracker's fault_message; 500 → E_INTERNAL", async () => {
    const r = recordingHttp((req) =>
      req.path === "/drives/rootfs" ? { status: 400, body: '{"fault_message":"Unable to open block device"}' } : { status: 500, body: "boom" },
    );
    const api = firecrackerApi(r.http, "/s");
    const e = await caught(api.send({ method: "PUT", path: "/drives/rootfs", body: {} }));
    expect(e).toBeInstanceOf(FirecrackerApiError);
    expect(e.code).toBe("E_BAD_REQUEST");
    expect(e.message).toBe("firecracker refused PUT /drives/rootfs (HTTP 400): Unable to open block device");
    const i = await caught(api.send({ method: "PUT", path: "/vsock", body: {} }));
    expect(i.code).toBe("E_INTERNAL");
    expect(i.message).toContain("boom");
    expect(faultMessageOf("")).toBe("(no fault_message)");
  });
});

describe("the call plan", () => {
  test("kernel: vmlinux next to vmlinuz; args a Firecracker guest needs come first", () => {
    expect(vmlinuxFor("/img/default/vmlinuz")).toBe("/img/default/vmlinux");
    expect(vmlinuxFor("/k/vmlinux-6.1")).toBe("/k/vmlinux-6.1");
    const calls = fcConfigCalls(fcVM(), { ...BOOT, kernelPath: "/img/vmlinux" }, { fcLog: "/l", metrics: "/m", vsock: "/vs" });
    const boot = calls.find((c) => c.path === "/boot-source")!.body as Record<string, string>;
    expect(boot.kernel_image_path).toBe("/img/vmlinux");
    expect(boot.initrd_path).toBeUndefined();
    expect(boot.boot_args).toStartWith("console=ttyS0 reboot=k panic=1 pci=off ");
    expect(boot.boot_args).toEndWith(" banger.x=1");
    expect(calls.at(-1)).toEqual({ method: "PUT", path: "/actions", body: { action_type: "InstanceStart" } });
  });

  test("each nic becomes eth{N} with its tap and MAC", () => {
    const calls = fcConfigCalls(fcVM(), { ...BOOT, nics: [{ tap: "bg-tap0", mac: "02:00:00:00:00:0a" }, { tap: "bg-tap1", mac: "02:00:00:00:00:0b" }] }, { fcLog: "/l", metrics: "/m", vsock: "/vs" });
    expect(calls.filter((c) => c.path.startsWith("/network-interfaces/"))).toEqual([
      { method: "PUT", path: "/network-interfaces/eth0", body: { iface_id: "eth0", host_dev_name: "bg-tap0", guest_mac: "02:00:00:00:00:0a" } },
      { method: "PUT", path: "/network-interfaces/eth1", body: { iface_id: "eth1", host_dev_name: "bg-tap1", guest_mac: "02:00:00:00:00:0b" } },
    ]);
  });

  test("refused before any process: qcow2 disks, QEMU net args, too many vCPUs, a bad MAC", () => {
    const p = { fcLog: "/l", metrics: "/m", vsock: "/vs" };
    expect(() => fcConfigCalls(fcVM(), { ...BOOT, disks: [{ path: "/d.qcow2", format: "qcow2" }] }, p)).toThrow("must be raw");
    expect(() => fcConfigCalls(fcVM(), { ...BOOT, netArgs: ["-netdev", "user"] }, p)).toThrow("QEMU network arguments");
    const big = fcVM();
    big.spec.cpus = 33;
    expect(() => fcConfigCalls(big, BOOT, p)).toThrow("1 to 32 vCPUs");
    expect(() => fcConfigCalls(fcVM(), { ...BOOT, nics: [{ tap: "t", mac: "02:00;rm -rf /" }] }, p)).toThrow("bad MAC");
  });

  test("instance id is firecracker-safe", () => {
    expect(fcInstanceId(fcVM())).toBe("banger-0123abcd");
  });
});

describe("the driver with a fake host and a recording transport", () => {
  function world(o: { failOn?: string } = {}) {
    const host = fakeHost({ files: { "/img/vmlinux": "elf", "/img/vmlinuz": "bz", "/img/initrd.img": "i", "/v/0123abcd/system.img": "" } });
    const sock = "/v/0123abcd/api.sock";
    host.exec.onSpawn = (pid, cmd, args) => {
      host.procs.add(pid, 777, [cmd, ...args]);
      host.fs.files.set(sock, ""); // firecracker binds its socket
    };
    const r = recordingHttp((req) => {
      if (req.method === "GET") return { status: 200, body: '{"app_name":"Firecracker","id":"x","state":"Not started","vmm_version":"1.16.1"}' };
      if (o.failOn && req.path === o.failOn) return { status: 400, body: '{"fault_message":"bad thing"}' };
      return { status: 204 };
    });
    const d = createFirecrackerDriver(host, { http: r.http, binary: "firecracker", probe: async () => ({ usable: true, reason: "ok" }) });
    return { host, r, d, sock };
  }

  test("launch: removes stale sockets first, creates log/metrics files, spawns with --api-sock/--id, probes, then configures in order", async () => {
    const w = world();
    w.host.fs.files.set(w.sock, "stale");
    const res = await w.d.launch(fcVM(), BOOT);
    expect(res).toEqual({ pid: 40000, pidStartTime: 777 });
    expect(w.host.fs.ops.slice(0, 4)).toEqual(["rmrf /v/0123abcd/api.sock", "rmrf /v/0123abcd/vsock.sock", "write /v/0123abcd/firecracker.log", "write /v/0123abcd/firecracker.metrics"]);
    expect(w.host.exec.spawns).toEqual([{ cmd: "/usr/bin/firecracker", args: ["--api-sock", w.sock, "--id", "banger-0123abcd"], pid: 40000, logPath: "/v/0123abcd/serial.log" }]);
    expect(w.r.requests.map((q) => `${q.method} ${q.path}`)).toEqual([
      "GET /", "PUT /logger", "PUT /metrics", "PUT /machine-config", "PUT /boot-source", "PUT /drives/rootfs", "PUT /vsock", "PUT /actions",
    ]);
    expect(w.r.requests.every((q) => q.sock === w.sock)).toBe(true);
  });

  test("a refused call kills the process it started and removes the socket; the error carries the fault_message", async () => {
    const w = world({ failOn: "/machine-config" });
    const e = await caught(w.d.launch(fcVM(), BOOT));
    expect(e.message).toBe("firecracker refused PUT /machine-config (HTTP 400): bad thing");
    expect(w.host.procs.kills).toEqual([{ pid: 40000, signal: "SIGKILL" }]);
    expect(w.host.fs.files.has(w.sock)).toBe(false);
    expect(w.r.requests.at(-1)!.path).toBe("/machine-config");
  });

  test("a request Firecracker would refuse (qcow2 disk) is refused before any file is touched or process started", async () => {
    const w = world();
    w.host.fs.files.set("/v/0123abcd/seed.img", "");
    const e = await caught(w.d.launch(fcVM(), { ...BOOT, initrdPaths: ["/img/initrd.img", "/v/0123abcd/seed.img"], disks: [{ path: "/v/0123abcd/system.img", format: "qcow2" }] }));
    expect(e.message).toContain("must be raw");
    expect(w.host.exec.runs).toEqual([]);
    expect(w.host.exec.spawns).toEqual([]);
    expect(w.host.fs.ops).toEqual([]);
  });

  test("stop: SendCtrlAltDel, waits, escalates to SIGKILL when the guest ignores it, then removes the socket", async () => {
    const w = world();
    const { pid, pidStartTime } = await w.d.launch(fcVM(), BOOT);
    await w.d.stop(fcVM(), { ...emptyHandles(), pid, pidStartTime }, 1000);
    expect(w.r.requests.at(-1)).toMatchObject({ method: "PUT", path: "/actions", body: { action_type: "SendCtrlAltDel" } });
    expect(w.host.clock.sleeps.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(1000);
    expect(w.host.procs.kills).toEqual([{ pid, signal: "SIGKILL" }]);
    expect(w.host.fs.files.has(w.sock)).toBe(false);
  });

  test("stop of a process that exits on Ctrl+Alt+Del sends no signal", async () => {
    const w = world();
    const { pid, pidStartTime } = await w.d.launch(fcVM(), BOOT);
    const http = recordingHttp((req) => {
      if (req.path === "/actions") w.host.procs.table.delete(pid);
      return { status: 204 };
    });
    const d2 = createFirecrackerDriver(w.host, { http: http.http });
    await d2.stop(fcVM(), { ...emptyHandles(), pid, pidStartTime }, 5000);
    expect(w.host.procs.kills).toEqual([]);
    expect(w.host.fs.files.has(w.sock)).toBe(false);
  });

  test("usable(): needs the binary and usable KVM, and says which is missing", async () => {
    const host = fakeHost();
    host.exec.missing.add("firecracker");
    const noBin = createFirecrackerDriver(host, { probe: async () => ({ usable: true, reason: "ok" }), env: {} });
    expect(await noBin.usable()).toEqual({ usable: false, reason: expect.stringContaining("firecracker not found on PATH") });
    const host2 = fakeHost();
    const noKvm = createFirecrackerDriver(host2, { probe: async () => ({ usable: false, reason: "/dev/kvm is kvm_pvm; using TCG" }), env: {} });
    expect(await noKvm.usable()).toEqual({ usable: false, reason: "/dev/kvm is kvm_pvm" });
    const ok = createFirecrackerDriver(host2, { probe: async () => ({ usable: true, reason: "/dev/kvm is usable" }), env: { BANGER_FIRECRACKER_BIN: "fc-test" } });
    expect((await ok.usable()).usable).toBe(true);
    expect(await ok.usable()).toEqual({ usable: true, reason: "/usr/bin/fc-test with /dev/kvm is usable" });
  });
});

describe("VMM choice", () => {
  function drivers(fcUsable: boolean) {
    const procs = fakeProcs();
    const qemu = fakeDriver(procs, { name: "qemu" });
    const fc: VMMDriver = { ...fakeDriver(procs, { name: "firecracker" }), name: "firecracker", usable: async () => ({ usable: fcUsable, reason: "/dev/kvm is kvm_pvm" }) };
    return new Map<string, VMMDriver>([["qemu", qemu], ["firecracker", fc]]);
  }

  test("default: firecracker when usable, else qemu", async () => {
    expect(await chooseVmm(drivers(true), undefined)).toBe("firecracker");
    expect(await chooseVmm(drivers(false), undefined)).toBe("qemu");
  });

  test("asked for but not usable → one-line E_BAD_REQUEST with the reason; unknown → the loaded list", async () => {
    const e = await caught(chooseVmm(drivers(false), "firecracker"));
    expect(e.code).toBe("E_BAD_REQUEST");
    expect(e.message).toBe("vmm firecracker cannot run on this host: /dev/kvm is kvm_pvm");
    expect(e.message).not.toContain("\n");
    expect(await chooseVmm(drivers(false), "qemu")).toBe("qemu");
    expect((await caught(chooseVmm(drivers(true), "xen"))).message).toBe('unknown vmm "xen" (loaded: qemu, firecracker)');
  });

  test("a configured default wins over the preference", async () => {
    expect(await chooseVmm(drivers(true), undefined, "qemu")).toBe("qemu");
  });
});

describe("the firecracker plugin", () => {
  async function created(driver: string, others: VMRecord[]) {
    const hooks = new HookEngine();
    const drivers: string[] = [];
    const ctx = {
      name: firecrackerPlugin.name,
      host: fakeHost(),
      paths: { home: "/h", imagesDir: "/h/images", vmsDir: "/h/vms" },
      log: { info() {}, warn() {}, error() {}, debug() {} },
      store: { listVMs: () => others, getImage: () => null },
      hook: (name, handler, opts) => hooks.hook(firecrackerPlugin.name, name, handler, opts),
      saveHandles: async () => {},
      adoptSSH: (_vm, conn) => conn.close(),
      connectGuest: () => {},
      registerDriver: (d) => void drivers.push(d.name),
      registerStorage: () => { throw new Error("firecracker registers no storage"); },
      registerNet: () => { throw new Error("firecracker registers no network"); },
    } satisfies PluginContext;
    await firecrackerPlugin.setup(ctx);
    const vm = sampleVM({ id: "newvm", driver, vmsDir: "/h/vms" });
    await hooks.run("vm:create", { vm, progress: () => {}, op: recordingOp() });
    return { vm, drivers };
  }

  test("registers the driver; a firecracker VM's record gets its vsock path, metrics path and the next free CID", async () => {
    const old = sampleVM({ id: "old" });
    old.runtime.vsockCID = 7;
    const { vm, drivers } = await created("firecracker", [old]);
    expect(drivers).toEqual(["firecracker"]);
    expect([vm.runtime.vsockPath, vm.runtime.metricsPath, vm.runtime.vsockCID]).toEqual(["/h/vms/newvm/vsock.sock", "/h/vms/newvm/firecracker.metrics", 8]);
    expect(nextVsockCid([])).toBe(3);
  });

  test("a QEMU VM's record is left alone", async () => {
    const { vm } = await created("qemu", []);
    expect([vm.runtime.vsockPath, vm.runtime.metricsPath, vm.runtime.vsockCID]).toEqual(["", "", 0]);
  });
});
