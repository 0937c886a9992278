import { caught, fakeHost, recordingOp, testLogger } from "../helpers/fakes.ts";
import { describe, expect, test } from "bun:test";
import { createServer } from "node:net";
import { HookEngine } from "../../src/core/hooks.ts";
import { emptyHandles, type VMRecord } from "../../src/shared/model.ts";
import { setupPlugins } from "../../src/core/loader.ts";
import { Providers } from "../../src/core/providers.ts";
import type { BootConfig } from "../../src/vmm/driver.ts";
import { allocateSshPort, createNetUserPlugin, netUserArgs, portFreeOnLoopback } from "../../plugins/net-user/index.ts";

function vm(id: string, driver = "qemu", sshPort = 0, net = "user"): VMRecord {
  return {
    id,
    name: `vm-${id}`,
    spec: { image: "default", cpus: 1, memoryMiB: 256, diskMiB: 0, workDiskMiB: 0, driver, net, storage: "copy" },
    runtime: {
      state: "created", guestIP: "", apiSockPath: "", vsockPath: "", vsockCID: 0, logPath: "", metricsPath: "",
      dnsName: "", vmDir: "", systemOverlay: "", workDiskPath: "", lastError: "", sshHost: "", sshPort,
    },
    createdAt: "", updatedAt: "",
  };
}

function boot(): BootConfig {
  return { kernelPath: "/k", initrdPaths: [], kernelArgs: [], disks: [], netArgs: [] };
}

/** The plugin loaded through the real loader over a HookEngine; `busy` ports fail the bind test. */
async function setup(store: VMRecord[], busy: Set<number>) {
  const engine = new HookEngine();
  const providers = new Providers();
  const probed: number[] = [];
  const log = testLogger();
  const plugin = createNetUserPlugin({
    range: { min: 30000, max: 30009 },
    random: () => 0,
    portFree: async (p) => {
      probed.push(p);
      return !busy.has(p);
    },
  });
  await setupPlugins([{ plugin, source: "builtin" }], {
    hooks: engine,
    host: fakeHost(),
    paths: { home: "/h", imagesDir: "/h/images", vmsDir: "/h/vms" },
    log,
    store: { listVMs: () => store, getImage: () => null },
    drivers: new Map(),
    providers,
  });
  return { engine, providers, probed, log };
}

describe("net-user", () => {
  test("vm:create allocates a port not owned by another VM and free right now", async () => {
    const store = [vm("a", "qemu", 30000), vm("b", "qemu", 30001)];
    const { engine, probed } = await setup(store, new Set([30002]));
    const v = vm("c");
    await engine.run("vm:create", { vm: v, progress: () => {}, op: recordingOp() });
    expect(v.runtime.sshPort).toBe(30003);
    expect(v.runtime.sshHost).toBe("127.0.0.1");
    expect(v.runtime.guestIP).toBe("10.0.2.15");
    // store-owned ports are skipped without probing
    expect(probed).toEqual([30002, 30003]);
  });

  test("vm:start:before pushes a restricted loopback-only forward plus the egress gate's two guestfwd relays", async () => {
    const { engine } = await setup([], new Set());
    const v = vm("c", "qemu", 30005);
    v.runtime.vmDir = "/state/vms/c";
    const b = boot();
    const op = recordingOp();
    await engine.run("vm:start:before", { vm: v, boot: b, handles: emptyHandles(), progress: () => {}, op });
    const d = v.runtime.vmDir;
    expect(b.netArgs).toEqual([
      "-netdev",
      `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:30005-:22,guestfwd=tcp:10.0.2.100:3128-cmd:socat -lf ${d}/egress-relay.log FD:0,,shut-down UNIX-CONNECT:${d}/egress-proxy.sock,guestfwd=tcp:10.0.2.53:53-cmd:socat -lf ${d}/egress-relay.log FD:0,,shut-down UNIX-CONNECT:${d}/egress-dns.sock`,
      "-device", "virtio-net-pci,netdev=n0",
    ]);
    expect(b.guestFiles?.["/etc/resolv.conf"]).toBe("nameserver 10.0.2.53\noptions use-vc timeout:2 attempts:1\n");
    expect(b.kernelArgs).toEqual(["banger.dns="]);
    expect(b.guestFiles?.["/etc/gitconfig"]).toContain("proxy = http://10.0.2.100:3128");
    expect(op.deferred).toContain("net-user:vm:start:before: egress gate");
    v.runtime.vmDir = "/state/my vms/c";
    expect((await caught(engine.run("vm:start:before", { vm: v, boot: boot(), handles: emptyHandles(), progress: () => {}, op: recordingOp() }))).message).toContain("[A-Za-z0-9/._-]");
    expect(v.runtime.sshPort).toBe(30005);
  });

  test("vm:start:before re-allocates when the stored port was taken meanwhile", async () => {
    const { engine, log } = await setup([vm("a", "qemu", 30000)], new Set([30005]));
    const v = vm("c", "qemu", 30005);
    const b = boot();
    await engine.run("vm:start:before", { vm: v, boot: b, handles: emptyHandles(), progress: () => {}, op: recordingOp() });
    expect(v.runtime.sshPort).toBe(30001);
    expect(b.netArgs[1]).toContain("hostfwd=tcp:127.0.0.1:30001-:22");
    expect(log.of("info")[0]).toContain("30005 is taken");
  });

  test("vm:start:before refuses a published TCP host port someone holds, before anything boots (its forward would be added only after the boot); any-port (0) and UDP are left to the forward", async () => {
    const { engine } = await setup([], new Set([8080]));
    const v = vm("p", "qemu", 30003);
    v.spec.ports = [
      { guestPort: 53, hostPort: 8080, hostIP: "127.0.0.1", proto: "udp", boundPort: 0, reach: [] },
      { guestPort: 443, hostPort: 0, hostIP: "127.0.0.1", proto: "tcp", boundPort: 0, reach: [] },
      { guestPort: 80, hostPort: 8080, hostIP: "127.0.0.1", proto: "tcp", boundPort: 0, reach: [] },
    ];
    const b = boot();
    const e = await caught(engine.run("vm:start:before", { vm: v, boot: b, handles: emptyHandles(), progress: () => {}, op: recordingOp() }));
    expect([e.code, e.message]).toEqual(["E_PORT_IN_USE", "host port 127.0.0.1:8080/tcp is in use (publishing guest port 80); pick another or use 0 for any"]);
    expect(b.netArgs).toEqual([]);
  });

  test("it registers the \"user\" network for QEMU only, and leaves VMs on another network alone", async () => {
    const { engine, providers, probed } = await setup([], new Set());
    expect(providers.netsFor("qemu", undefined)).toEqual(["user"]);
    expect(providers.netsFor("firecracker", undefined)).toEqual([]);
    const v = vm("f", "qemu", 0, "tap");
    const b = boot();
    await engine.run("vm:create", { vm: v, progress: () => {}, op: recordingOp() });
    await engine.run("vm:start:before", { vm: v, boot: b, handles: emptyHandles(), progress: () => {}, op: recordingOp() });
    expect(v.runtime.sshPort).toBe(0);
    expect(b.netArgs).toEqual([]);
    expect(probed).toEqual([]);
  });

  test("no free port → E_CONFLICT", async () => {
    const all = new Set(Array.from({ length: 10 }, (_, i) => 30000 + i));
    await expect(allocateSshPort([], "x", { range: { min: 30000, max: 30009 }, portFree: async (p) => !all.has(p) })).rejects.toThrow(
      /no free loopback port/,
    );
  });

  test("20 concurrent allocations (slow bind test, rows not saved yet) get 20 different ports", async () => {
    const vms = Array.from({ length: 20 }, (_, i) => vm(`v${i}`));
    const reserved = new Map<string, number>();
    const o = { range: { min: 30000, max: 30029 }, random: () => 0, portFree: async () => (await Bun.sleep(Math.random() * 20), true) };
    const ports = await Promise.all(vms.map((v) => allocateSshPort(vms, v.id, o, reserved)));
    expect(new Set(ports).size).toBe(20);
    // once the rows hold their ports the reservations are dropped
    vms.forEach((v, i) => (v.runtime.sshPort = ports[i]!));
    await allocateSshPort(vms, "late", o, reserved);
    expect([...reserved.keys()]).toEqual(["late"]);
  });

  test("a VM's own port is not counted as taken", async () => {
    const p = await allocateSshPort([vm("self", "qemu", 30000)], "self", { range: { min: 30000, max: 30001 }, random: () => 0, portFree: async () => true });
    expect(p).toBe(30000);
  });

  test("real bind test sees a listening port as taken", async () => {
    const srv = createServer();
    const port = await new Promise<number>((r) => srv.listen({ host: "127.0.0.1", port: 0 }, () => r((srv.address() as { port: number }).port)));
    try {
      expect(await portFreeOnLoopback(port)).toBe(false);
    } finally {
      srv.close();
    }
    expect(await portFreeOnLoopback(port)).toBe(true);
    expect(netUserArgs(1)).toHaveLength(4);
  });
});
