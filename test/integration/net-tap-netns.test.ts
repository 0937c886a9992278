/**
 * net-tap for real, but only inside network namespaces this test creates:
 *   <host ns>   the plugin's commands run here (bridge, NAT, taps, iptables)
 *   <guest ns>  a veth on the bridge with the VM's leased IP stands in for the guest
 *   <out ns>    "the internet": reached from the guest only through the host ns' NAT
 * Nothing is added to the machine's own namespace. Needs root, ip, iptables, ping.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Engine } from "../../src/core/engine.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { setupPlugins } from "../../src/core/loader.ts";
import { createClock } from "../../src/host/clock.ts";
import { createExec } from "../../src/host/exec.ts";
import { createFS } from "../../src/host/fs.ts";
import type { Exec, Host } from "../../src/host/types.ts";
import { createLeaseStore } from "../../src/store/leases.ts";
import { Store } from "../../src/store/store.ts";
import { createNetTapPlugin } from "../../plugins/net-tap/index.ts";
import { tapName } from "../../plugins/net-tap/subnet.ts";
import { fakeDriver, fakeProcs, fakeSSH, sampleImage, testLogger, testProviders } from "../helpers/fakes.ts";
import { firstMissing, IS_ROOT, needs } from "../helpers/skip.ts";

const tag = String(process.pid % 100000);
const NS = { host: `bgt-h${tag}`, guest: `bgt-g${tag}`, out: `bgt-o${tag}` };
const SUBNET = "10.213.7.0/24";
const BRIDGE = "bgtbr0";
const real = createExec();
const missing = firstMissing(
  [IS_ROOT, "needs root (network namespaces, bridge, iptables)"],
  [!!Bun.which("iptables", { PATH: "/usr/sbin:/sbin:/usr/bin" }), "needs iptables"],
  [!!Bun.which("ip", { PATH: "/usr/sbin:/sbin:/usr/bin" }), "needs ip (iproute2)"],
);
const canRun = missing === "";

/** Run a command inside a namespace. */
function inNs(ns: string, cmd: string, args: string[], opts: { check?: boolean; input?: string; timeoutMs?: number } = {}) {
  return real.run("ip", ["netns", "exec", ns, cmd, ...args], { timeoutMs: 20_000, ...opts });
}

/** An Exec whose every command runs in `ns`: the plugin never sees the host's own namespace. */
function nsExec(ns: string): Exec {
  return {
    run: (cmd, args, opts) => real.run("ip", ["netns", "exec", ns, cmd, ...args], opts),
    spawnDetached: (cmd, args, opts) => real.spawnDetached("ip", ["netns", "exec", ns, cmd, ...args], opts),
    which: (cmd) => real.which(cmd),
  };
}

/** A one-shot TCP server in `ns` that writes the peer's address and closes; returns its process. */
function peerEcho(ns: string, port: number) {
  const code = `Bun.listen({ hostname: "0.0.0.0", port: ${port}, socket: { open(s) { s.write(s.remoteAddress + "\\n"); s.end(); }, data() {} } }); console.log("listening");`;
  return Bun.spawn(["ip", "netns", "exec", ns, process.execPath, "-e", code], { stdout: "pipe", stderr: "pipe" });
}

async function waitListening(p: ReturnType<typeof peerEcho>): Promise<void> {
  const reader = p.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  if (!new TextDecoder().decode(value).includes("listening")) throw new Error("echo server did not start");
}

/** Connect from `ns` with bash's /dev/tcp and return the first line the server sent. */
async function tcpLine(ns: string, ip: string, port: number): Promise<string> {
  const r = await inNs(ns, "bash", ["-c", `exec 3<>/dev/tcp/${ip}/${port} && IFS= read -r -t 5 line <&3 && printf '%s' "$line"`], { check: false, timeoutMs: 10_000 });
  return r.exitCode === 0 ? r.stdout : `failed (${r.exitCode}): ${r.stderr}`;
}

// this test process (the "daemon") stays in the machine's namespace, where the bridge address is not: its resolver is
// a stand-in (test/integration/tap-egress-netns.test.ts runs the real one inside a namespace)
const noDnsServer = async () => ({ close: async () => {} });

let dir = "";
let store: Store;
let engine: Engine;
let makeEngine: () => Engine;
const procs = fakeProcs();

beforeAll(async () => {
  if (!canRun) return;
  for (const ns of Object.values(NS)) {
    await real.run("ip", ["netns", "del", ns], { check: false });
    await real.run("ip", ["netns", "add", ns]);
    await inNs(ns, "ip", ["link", "set", "lo", "up"]);
  }
  // `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts: the plugin's hosts file for this test
  mkdirSync(`/etc/netns/${NS.host}`, { recursive: true });
  writeFileSync(`/etc/netns/${NS.host}/hosts`, "127.0.0.1\tlocalhost\n");
  // host ns <-> out ns, a documentation range (TEST-NET-2) that exists only between these two namespaces
  await inNs(NS.host, "ip", ["link", "add", "bgt-out", "type", "veth", "peer", "name", "eth0", "netns", NS.out]);
  await inNs(NS.host, "ip", ["addr", "add", "198.51.100.1/24", "dev", "bgt-out"]);
  await inNs(NS.host, "ip", ["link", "set", "bgt-out", "up"]);
  await inNs(NS.out, "ip", ["addr", "add", "198.51.100.2/24", "dev", "eth0"]);
  await inNs(NS.out, "ip", ["link", "set", "eth0", "up"]);

  dir = mkdtempSync(join(tmpdir(), "banger-nettap-"));
  const paths = { home: dir, imagesDir: join(dir, "images"), vmsDir: join(dir, "vms") };
  store = new Store(join(dir, "banger.db"));
  store.upsertImage(sampleImage("default"));
  const host: Host = { exec: nsExec(NS.host), procs, clock: createClock(), fs: createFS(), ssh: fakeSSH() };
  const hooks = new HookEngine();
  const providers = testProviders({ net: [] });
  const log = testLogger();
  await setupPlugins([{ plugin: createNetTapPlugin({ bridge: BRIDGE, subnet: SUBNET, hostsFile: `/etc/netns/${NS.host}/hosts`, dns: "", serveDns: noDnsServer, serveGate: async () => ({ close: async () => {} }) }, {}), source: "test" }], {
    hooks, host, paths, log, drivers: new Map(), providers,
    store: { listVMs: () => store.listVMs(), getImage: (n) => store.getImage(n), leases: store.leases },
  });
  const driver = fakeDriver(procs);
  let n = 0;
  // egress all: these tests are about the tap, not the egress firewall (test/e2e/net-tap.test.ts has it)
  makeEngine = () => new Engine({ store, host, hooks, providers, drivers: new Map([[driver.name, driver]]), paths, log, defaultDriver: driver.name, newId: () => `nt${tag}x${++n}`, defaultEgress: "all" });
  engine = makeEngine();
});

afterAll(async () => {
  if (!canRun) return;
  // deleting a namespace deletes every link, address, rule and route inside it
  for (const ns of Object.values(NS)) await real.run("ip", ["netns", "del", ns], { check: false });
  rmSync(`/etc/netns/${NS.host}`, { recursive: true, force: true });
  store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

needs(canRun, missing).describe("net-tap in network namespaces", () => {
  test("bridge + tap + NAT: ping and TCP from the bridge side, egress masqueraded, <name>.vm resolves, stop removes the tap", async () => {
    const vm = await engine.create({ name: "alpha", net: "tap" });
    expect(vm.runtime.guestIP).toBe("10.213.7.2");
    const t0 = performance.now();
    await engine.start("alpha");
    console.log(`net-tap: first start (bridge, NAT, tap) ${Math.round(performance.now() - t0)} ms`);
    const tap = tapName(vm.id);

    const link = await inNs(NS.host, "ip", ["-o", "link", "show", "dev", tap]);
    expect(link.stdout).toContain(`master ${BRIDGE}`);
    const addr = await inNs(NS.host, "ip", ["-o", "-4", "addr", "show", "dev", BRIDGE]);
    expect(addr.stdout).toContain("10.213.7.1/24");
    const nat = await inNs(NS.host, "iptables", ["-t", "nat", "-S", "POSTROUTING"]);
    expect(nat.stdout).toContain(`-A POSTROUTING -s 10.213.7.0/24 ! -o ${BRIDGE} -j MASQUERADE`);
    expect((await inNs(NS.host, "sysctl", ["-n", "net.ipv4.ip_forward"])).stdout.trim()).toBe("1");

    // the guest: a veth on the same bridge carrying the leased address (a tap only carries traffic once qemu opens it)
    await inNs(NS.host, "ip", ["link", "add", "bgt-gv", "type", "veth", "peer", "name", "eth0", "netns", NS.guest]);
    await inNs(NS.host, "ip", ["link", "set", "bgt-gv", "master", BRIDGE, "up"]);
    await inNs(NS.guest, "ip", ["addr", "add", `${vm.runtime.guestIP}/24`, "dev", "eth0"]);
    await inNs(NS.guest, "ip", ["link", "set", "eth0", "up"]);
    await inNs(NS.guest, "ip", ["route", "add", "default", "via", "10.213.7.1"]);

    const ping = await inNs(NS.host, "ping", ["-c", "3", "-i", "0.2", "-W", "2", vm.runtime.guestIP], { check: false });
    expect(ping.stdout).toContain("3 received");

    const guestSrv = peerEcho(NS.guest, 2222);
    const outSrv = peerEcho(NS.out, 8080);
    try {
      await Promise.all([waitListening(guestSrv), waitListening(outSrv)]);
      // bridge side -> guest: the peer it sees is the bridge address
      expect(await tcpLine(NS.host, vm.runtime.guestIP, 2222)).toBe("10.213.7.1");
      // guest -> outside: NAT rewrites the source to the host ns' outward address
      expect(await tcpLine(NS.guest, "198.51.100.2", 8080)).toBe("198.51.100.1");
    } finally {
      guestSrv.kill();
      outSrv.kill();
    }

    const resolved = await inNs(NS.host, "getent", ["hosts", "alpha.vm"]);
    expect(resolved.stdout.trim().split(/\s+/)).toEqual(["10.213.7.2", "alpha.vm"]);

    await engine.stop("alpha", { force: true });
    expect((await inNs(NS.host, "ip", ["link", "show", "dev", tap], { check: false })).exitCode).not.toBe(0);
    await inNs(NS.host, "ip", ["link", "del", "bgt-gv"]);
  }, 60_000);

  test("second start reuses bridge and rules (no duplicates); a VM that died is cleaned up by reconcile; delete drops the name", async () => {
    await engine.create({ name: "beta", net: "tap" });
    const t0 = performance.now();
    const beta = await engine.start("beta");
    console.log(`net-tap: later start (checks + tap) ${Math.round(performance.now() - t0)} ms`);
    await engine.start("alpha");
    const rules = await inNs(NS.host, "iptables", ["-t", "nat", "-S", "POSTROUTING"]);
    expect(rules.stdout.split("\n").filter((l) => l.includes("MASQUERADE")).length).toBe(1);

    // beta's VMM dies while no daemon runs; the next daemon's reconcile removes its tap
    const pid = engine.cache.get(beta.id)!.pid;
    procs.table.delete(pid);
    const out = await makeEngine().reconcile();
    expect(out.find((o) => o.vm === "beta")).toMatchObject({ action: "demoted", cleanupErrors: [] });
    expect((await inNs(NS.host, "ip", ["link", "show", "dev", tapName(beta.id)], { check: false })).exitCode).not.toBe(0);
    // alpha is alive: kept, tap still there
    expect((await inNs(NS.host, "ip", ["link", "show", "dev", tapName(engine.getVM("alpha").id)], { check: false })).exitCode).toBe(0);

    expect((await inNs(NS.host, "getent", ["hosts", "beta.vm"])).stdout).toContain("10.213.7.3");
    await engine.delete("beta");
    expect((await inNs(NS.host, "getent", ["hosts", "beta.vm"], { check: false })).exitCode).not.toBe(0);
    const alpha = engine.getVM("alpha");
    await engine.delete("alpha", { force: true });
    expect((await inNs(NS.host, "ip", ["link", "show", "dev", tapName(alpha.id)], { check: false })).exitCode).not.toBe(0);
    expect(await Bun.file(`/etc/netns/${NS.host}/hosts`).text()).toBe("127.0.0.1\tlocalhost\n");
  }, 60_000);
});
