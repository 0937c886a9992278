import { afterEach, describe, expect, test } from "bun:test";
import { rawDb } from "../helpers/fakes.ts";
import { join } from "node:path";
import { BangerError } from "../../src/shared/errors.ts";
import { setupPlugins } from "../../src/core/loader.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { readHandlesFile } from "../../src/handles/file.ts";
import { createLeaseStore } from "../../src/store/leases.ts";
import { createNetTapPlugin, guestResolver, IP_POOL, type NetTapOptions } from "../../plugins/net-tap/index.ts";
import { hostsMarker, rewriteHostsFile, withHostsBlock } from "../../plugins/net-tap/hosts-file.ts";
import { guestAddresses, macFor, parseSubnet, tapName } from "../../plugins/net-tap/subnet.ts";
import { caught, engineWorld, fakeHost, type TestStore } from "../helpers/fakes.ts";
import { DEFAULT_GATE_PORT, fillScript, gatedPorts, listKey, listScript, unlistScript } from "../../plugins/net-tap/egress-list.ts";
import { allowScript, denyScript, EGRESS_TABLES } from "../../plugins/net-tap/egress-fw.ts";
import { namedEntries, SET_TIMEOUT_FLOOR_S, type ServeGate } from "../../plugins/net-tap/tap-resolver.ts";
import { EGRESS_LOG_FILE, parseEgress, type EgressRule } from "../../src/shared/egress.ts";
import { buildQuery, readAnswer } from "../../src/shared/dns-wire.ts";
import type { DnsAnswerer } from "../../src/host/dns-server.ts";

/** What the bridge resolver's upstream knows (RFC 5737 addresses; one name rebinds to cloud metadata). */
const RECORDS: Record<string, string[]> = {
  "pkgs.example.test": ["198.51.100.10"],
  "other.example.test": ["198.51.100.20"],
  "a.git.example.test": ["198.51.100.22"],
  "meta.git.example.test": ["169.254.169.254"],
  "evil.example.net": ["198.51.100.30"],
};

const PATHS = { home: "/state", imagesDir: "/state/images", vmsDir: "/state/vms" };
const HOSTS = "/etc/hosts-test";
const FOREIGN = "127.0.0.1\tlocalhost\n10.9.9.9\tsomething.else\n";

const stores: TestStore[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.cleanup();
});

/** An engine over fakes + a real SQLite store, with net-tap (and optional extra plugins) loaded through the public loader. */
async function world(o: { opts?: NetTapOptions; env?: NodeJS.ProcessEnv; before?: ReturnType<typeof definePlugin>[]; after?: ReturnType<typeof definePlugin>[]; egress?: string } = {}) {
  let n = 0;
  // all: no nft calls in the command lines these tests compare (the egress tests below ask for none)
  const w = engineWorld({ paths: PATHS, newId: () => `id${String(++n).padStart(4, "0")}`, stopTimeoutMs: 1000, fakeProviders: { net: ["user"] }, defaultEgress: o.egress ?? "all" });
  stores.push(w.ts);
  w.host.fs.files.set(HOSTS, FOREIGN);
  w.host.fs.files.set("/etc/resolv.conf", "nameserver 127.0.0.53\nnameserver 192.0.2.53\n");
  const leases = w.ts.store.leases;
  // the bridge resolver: a stand-in server (no socket) whose answerer the tests call as a guest would
  const dns: { listens: string[]; answer?: DnsAnswerer } = { listens: [] };
  const serveDns = async (addr: string, port: number, answer: DnsAnswerer) => {
    dns.listens.push(`${addr}:${port}`);
    dns.answer = answer;
    return { close: async () => {} };
  };
  // the gate: a stand-in server too; `gate.route` is what a redirected connection would be given
  const gate: { listens: string[]; route?: Parameters<ServeGate>[2] } = { listens: [] };
  const serveGate: ServeGate = async (addr, port, route) => {
    gate.listens.push(`${addr}:${port}`);
    gate.route = route;
    return { close: async () => {} };
  };
  const resolve = async (name: string) => {
    if (name === "down.example.test") throw new Error("upstream timed out");
    return { addrs: RECORDS[name] ?? [], ttl: 30 };
  };
  const plugin = createNetTapPlugin({ hostsFile: HOSTS, serveDns, serveGate, resolve, ...o.opts }, o.env ?? {});
  await w.load(
    [...(o.before ?? []), plugin, ...(o.after ?? [])].map((p) => ({ plugin: p, source: "test" })),
    { leases },
  );
  return { ...w, engine: w.make(), leases, dns, gate, hosts: () => w.host.fs.files.get(HOSTS)! };
}

const block = (lines: string[]) => [`# BEGIN ${hostsMarker(PATHS.home)} (managed by banger net-tap; do not edit)`, ...lines, `# END ${hostsMarker(PATHS.home)}`].join("\n") + "\n";

describe("net-tap: create", () => {
  test("not root and no CAP_NET_ADMIN: refused at create in one line naming both ways out, nothing leased or written; with the capability it goes on", async () => {
    const w = await world();
    w.host.fs.files.set("/proc/self/status", "Name:\tbanger\nUid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n");
    const err = await caught(w.engine.create({ name: "alpha", net: "tap" }));
    expect(err.code).toBe("E_PERMISSION");
    expect(err.message).toBe('net-tap:vm:create: --net tap needs root or CAP_NET_ADMIN (a tap device, the bridge, NAT): run banger as root, or `sudo setcap cap_net_admin+ep "$(command -v banger)"` (see `banger doctor`); --net user needs neither');
    expect(w.leases.list(IP_POOL)).toEqual([]);
    expect(w.hosts()).toBe(FOREIGN);
    expect(w.ts.store.getVM("alpha")).toBeNull();
    w.host.fs.files.set("/proc/self/status", "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000001000\n");
    expect((await w.engine.create({ name: "alpha", net: "tap" })).runtime.guestIP).toBe("10.213.0.2");
    // a user-net VM needs neither
    w.host.fs.files.set("/proc/self/status", "Uid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n");
    expect((await w.engine.create({ name: "beta" })).spec.net).not.toBe("tap");
  });

  test("a hosts file that cannot be rewritten fails the create and gives the address back (deferred before the rewrite)", async () => {
    const w = await world();
    let fails = 1;
    w.host.fs.failWrites = { test: (p: string) => p === HOSTS && fails-- > 0 } as unknown as RegExp;
    const err = await caught(w.engine.create({ name: "alpha", net: "tap" }));
    expect(err.message).toContain("EIO");
    expect(err.undoFailures).toEqual([]);
    expect(w.leases.list(IP_POOL)).toEqual([]);
    expect(w.ts.store.getVM("alpha")).toBeNull();
  });

  test("a tap VM leases the first free guest IP, SSH goes to IP:22, <name>.vm lands in the hosts file (0644, other lines kept)", async () => {
    const w = await world();
    const a = await w.engine.create({ name: "alpha", net: "tap" });
    const b = await w.engine.create({ name: "beta", net: "tap" });
    expect(a.runtime).toMatchObject({ guestIP: "10.213.0.2", sshHost: "10.213.0.2", sshPort: 22, dnsName: "alpha.vm" });
    expect(b.runtime.guestIP).toBe("10.213.0.3");
    expect(w.ts.store.getVM("beta")!.spec.net).toBe("tap");
    expect(w.hosts()).toBe(FOREIGN + block(["10.213.0.2\talpha.vm", "10.213.0.3\tbeta.vm"]));
    expect(w.host.fs.writes.filter((x) => x.path === HOSTS).every((x) => x.mode === 0o644)).toBe(true);
    // creating runs no host network commands: the tap only exists while the VM runs
    expect(w.host.exec.lines()).toEqual([]);
  });

  test("a user-net VM gets no lease, no hosts entry, no commands, even with another plugin's tapDevice in its handles", async () => {
    const other = definePlugin({
      name: "other-net",
      setup(ctx) {
        ctx.hook("vm:start:before", ({ handles }) => void (handles.tapDevice = "theirs0"));
      },
    });
    const w = await world({ after: [other] });
    const vm = await w.engine.create({ name: "plain" });
    expect(vm.spec.net).toBe("user");
    expect(w.leases.list(IP_POOL)).toEqual([]);
    expect(w.hosts()).toBe(FOREIGN);
    await w.engine.start("plain");
    await w.engine.delete("plain");
    expect(w.host.exec.lines()).toEqual([]);
  });

  test("BANGER_TAP_NETNS_ONLY: outside a namespace made by `ip netns add` a tap VM is refused before any lease, hosts edit or ip command; in another one it proceeds", async () => {
    const w = await world({ env: { BANGER_TAP_NETNS_ONLY: "1" } });
    w.host.exec.on(/^sh -c stat /, { stdout: "4026531840\n4026532999\n" });
    const err = await caught(w.engine.create({ name: "alpha", net: "tap" }));
    expect(err.message).toContain("not in a namespace made by `ip netns add`");
    expect(w.leases.list(IP_POOL)).toEqual([]);
    expect(w.hosts()).toBe(FOREIGN);
    expect(w.host.exec.lines()).toEqual(["sh -c stat -L -c %i /proc/self/ns/net /run/netns/* 2>/dev/null"]);
    const ns = await world({ env: { BANGER_TAP_NETNS_ONLY: "1" } });
    ns.host.exec.on(/^sh -c stat /, { stdout: "4026532999\n4026531840\n4026532999\n" });
    expect((await ns.engine.create({ name: "alpha", net: "tap" })).runtime.guestIP).toBe("10.213.0.2");
  });

  test("an unknown --net is refused before any work", async () => {
    const w = await world();
    const err = await caught(w.engine.create({ name: "x", net: "bridge" }));
    expect(err.code).toBe("E_BAD_REQUEST");
    expect(w.ts.store.listVMs()).toEqual([]);
  });

  test("a later create step failing gives the IP back and removes the hosts entry before the row goes (reverse order)", async () => {
    const order: string[] = [];
    const first = definePlugin({
      name: "first",
      setup(ctx) {
        // "pre": before the VM's providers (net-tap's handler), so its undo runs after theirs
        ctx.hook("vm:create", () => () => void order.push(`first undo; leases=${ctx.store.leases!.list(IP_POOL).length}`), { order: "pre" });
      },
    });
    const boom = definePlugin({
      name: "boom",
      setup(ctx) {
        ctx.hook("vm:create", () => {
          order.push("boom");
          throw new Error("disk full");
        });
      },
    });
    const w = await world({ before: [first], after: [boom] });
    const err = await caught(w.engine.create({ name: "alpha", net: "tap" }));
    expect(err.message).toContain("boom:vm:create: disk full");
    expect(w.leases.list(IP_POOL)).toEqual([]);
    expect(w.hosts()).toBe(FOREIGN);
    expect(order).toEqual(["boom", "first undo; leases=0"]);
    expect(w.ts.store.listVMs()).toEqual([]);
  });

  test("pool exhaustion is E_CONFLICT and leaves nothing behind", async () => {
    const w = await world({ opts: { subnet: "10.50.0.8/29" } });
    const ips = [];
    for (const name of ["a", "b", "c", "d", "e"]) ips.push((await w.engine.create({ name, net: "tap" })).runtime.guestIP);
    expect(ips).toEqual(["10.50.0.10", "10.50.0.11", "10.50.0.12", "10.50.0.13", "10.50.0.14"]);
    const err = await caught(w.engine.create({ name: "f", net: "tap" }));
    expect(err.code).toBe("E_CONFLICT");
    expect(err.message).toContain("net-tap");
    expect(w.ts.store.getVM("f")).toBeNull();
    expect(w.leases.list(IP_POOL).length).toBe(5);
    // a freed address is reused
    await w.engine.delete("c");
    expect((await w.engine.create({ name: "g", net: "tap" })).runtime.guestIP).toBe("10.50.0.12");
  });
});

describe("net-tap: start", () => {
  test("fresh host: bridge, address, NAT, forward rules, then the tap on the bridge, in that order; boot gets the nic and ip args", async () => {
    const w = await world();
    w.host.exec.on("ip link show dev banger0", { exitCode: 1, stderr: 'Device "banger0" does not exist.' });
    w.host.exec.on(/^iptables -w -t \S+ -C /, { exitCode: 1, stderr: "Bad rule" });
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    await w.engine.start("alpha");
    const tap = tapName(vm.id);
    expect(tap).toBe("bt-id0001");
    expect(w.host.exec.lines()).toEqual([
      "ip link show dev banger0",
      "ip link add name banger0 type bridge",
      "ip addr replace 10.213.0.1/24 dev banger0",
      "ip link set dev banger0 up",
      "sysctl -q -w net.ipv4.ip_forward=1",
      "iptables -w -t nat -C POSTROUTING -s 10.213.0.0/24 ! -o banger0 -j MASQUERADE",
      "iptables -w -t nat -A POSTROUTING -s 10.213.0.0/24 ! -o banger0 -j MASQUERADE",
      "iptables -w -t filter -C FORWARD -i banger0 -j ACCEPT",
      "iptables -w -t filter -A FORWARD -i banger0 -j ACCEPT",
      "iptables -w -t filter -C FORWARD -o banger0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      "iptables -w -t filter -A FORWARD -o banger0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
      `ip link del dev ${tap}`,
      `ip tuntap add dev ${tap} mode tap`,
      `ip link set dev ${tap} master banger0 up`,
    ]);
    const boot = w.driver.launches[0]!.boot;
    expect(boot.nics).toEqual([{ tap, mac: macFor(vm.id) }]);
    // the guest asks the daemon's resolver on the bridge, whatever its policy
    expect(boot.kernelArgs).toEqual(["banger.ip=10.213.0.2/24", "banger.gw=10.213.0.1", "banger.dns=10.213.0.1"]);
    expect(w.dns.listens).toEqual(["10.213.0.1:53"]);
    expect(boot.netArgs).toEqual([]);
    expect((await readHandlesFile(w.host.fs, vm.runtime.vmDir)).handles!.tapDevice).toBe(tap);
  });

  test("existing bridge and rules: nothing is added twice", async () => {
    const w = await world();
    await w.engine.create({ name: "alpha", net: "tap" });
    await w.engine.start("alpha");
    const lines = w.host.exec.lines();
    expect(lines.filter((l) => l.includes(" -A ") || l.includes("type bridge"))).toEqual([]);
    expect(lines.filter((l) => l.startsWith("iptables")).length).toBe(3);
  });

  test("a launch failure deletes the tap again (undo), and cleanup's second delete of a gone tap is not an error", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    const tap = tapName(vm.id);
    let made = false;
    w.host.exec.on(`ip tuntap add dev ${tap}`, () => ((made = true), {}));
    w.host.exec.on(`ip link del dev ${tap}`, () => {
      const was = made;
      made = false;
      return was ? {} : { exitCode: 1, stderr: `Cannot find device "${tap}"` };
    });
    w.driver.failLaunch = new BangerError("E_INTERNAL", "qemu exploded");
    const err = await caught(w.engine.start("alpha"));
    expect(err.message).toContain("qemu exploded");
    expect(made).toBe(false);
    const after = w.host.exec.lines().slice(w.host.exec.lines().indexOf(`ip link set dev ${tap} master banger0 up`) + 1);
    // once: the start's undo; vm:cleanup does not run on top of it
    expect(after).toEqual([`ip link del dev ${tap}`]);
    expect(w.ts.store.getVM("alpha")!.runtime.state).toBe("error");
    expect(err.undoFailures).toEqual([]);
  });

  test("a tap that cannot join the bridge is removed and the error says what rights are needed", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    const tap = tapName(vm.id);
    w.host.exec.on(`ip link set dev ${tap} master`, { exitCode: 2, stderr: "RTNETLINK answers: Operation not permitted" });
    const err = await caught(w.engine.start("alpha"));
    expect(err.message).toContain(`net-tap:vm:start:before: cannot attach ${tap} to banger0: RTNETLINK answers: Operation not permitted`);
    expect(err.message).toContain("CAP_NET_ADMIN");
    expect(w.driver.launches).toEqual([]);
    const lines = w.host.exec.lines();
    expect(lines.slice(lines.indexOf(`ip tuntap add dev ${tap} mode tap`))).toEqual([
      `ip tuntap add dev ${tap} mode tap`,
      `ip link set dev ${tap} master banger0 up`,
      // once: the undo deferred before the tap was made (vm:cleanup does not run after a failed start)
      `ip link del dev ${tap}`,
    ]);
  });
});

describe("net-tap: egress", () => {
  const nftRuns = (w: Awaited<ReturnType<typeof world>>, from: number) => w.host.exec.runs.slice(from).filter((c) => c.cmd === "nft").map((c) => [c.args.join(" "), String(c.opts.input ?? "")]);

  test("none: the guest's address and tap go into the nftables sets after launch; all takes them out", async () => {
    const w = await world({ egress: "none" });
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    const tap = tapName(vm.id);
    const before = w.host.exec.runs.length;
    await w.engine.start("alpha");
    expect(nftRuns(w, before)).toEqual([
      // the fake's nft says every table, map and chain is there already
      ["list set inet banger_egress dl4", ""],
      ["-f -", denyScript("10.213.0.2", tap)],
      [`list chain inet banger_egress f_${listKey(tap)}`, ""],
      ["-f -", unlistScript("10.213.0.2", tap)],
      // what the shared deny log holds for this address already is not this VM's to log
      ["-j list table inet banger_egress", ""],
    ]);
    const n = w.host.exec.runs.length;
    await w.engine.setEgress("alpha", "all");
    expect(nftRuns(w, n).at(-1)![1]).toStartWith("add element inet banger_egress deny4 { 10.213.0.2 }\ndelete element inet banger_egress deny4 { 10.213.0.2 }\n");
    expect(nftRuns(w, n).at(-1)![1]).toBe(allowScript("10.213.0.2", tap));
  });

  test("none: the guest is in deny4, its tap guarded, and its bridge chain sends other guests only what isolate lets through", () => {
    const tap = "bt-id0001";
    expect(denyScript("10.213.0.2", tap).split("\n")).toEqual([
      `add element bridge banger_egress own { "${tap}" . 10.213.0.2 }`,
      `add element bridge banger_egress guarded { "${tap}" }`,
      "add element inet banger_egress deny4 { 10.213.0.2 }",
      "add chain bridge banger_egress b_id0001",
      "flush chain bridge banger_egress b_id0001",
      "add rule bridge banger_egress b_id0001 jump isolate",
      `add element bridge banger_egress g2g { "${tap}" : jump b_id0001 }`,
      "",
    ]);
    // the way out removes the g2g element (whatever chain it jumps to: one per VM) and the chain
    expect(allowScript("10.213.0.2", tap)).toEndWith(`add chain bridge banger_egress b_id0001\nadd element bridge banger_egress g2g { "${tap}" : jump b_id0001 }\ndelete element bridge banger_egress g2g { "${tap}" }\ndelete chain bridge banger_egress b_id0001\n`);
    // the stateless isolation: a bare SYN, UDP and other IPv4 to another guest go; replies to connections made to it pass
    expect(EGRESS_TABLES).toContain("ether type ip ip protocol tcp tcp flags & (syn | ack) == syn counter drop\n    ether type ip ip protocol tcp accept\n");
    expect(EGRESS_TABLES).toContain("chain between { type filter hook forward priority -200; policy accept;\n    iifname vmap @g2g\n");
    expect(EGRESS_TABLES).toContain("chain prenat { type nat hook prerouting priority dstnat; policy accept;\n    ip saddr vmap @nat4\n");
  });

  test("an allowlist: one nft transaction with the VM's chains, listed CIDRs as rules, DNS elsewhere dropped, the resolver allowed", async () => {
    const w = await world({ egress: "pkgs.example.test,203.0.113.0/24:443,198.51.100.7" });
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    const tap = tapName(vm.id);
    const k = listKey(tap);
    const before = w.host.exec.runs.length;
    await w.engine.start("alpha");
    const script = nftRuns(w, before).at(-1)![1];
    expect(script).toBe(listScript("10.213.0.2", tap, "10.213.0.1", (parseEgress("pkgs.example.test,203.0.113.0/24:443,198.51.100.7") as { rules: EgressRule[] }).rules));
    const f = script.split("\n").filter((l) => l.startsWith(`add rule inet banger_egress f_${k} `)).map((l) => l.slice(`add rule inet banger_egress f_${k} `.length));
    const note = `meta l4proto { tcp, udp } add @dl_${k} { ip daddr . meta l4proto . th dport }`;
    expect(f).toEqual([
      "ct state established,related accept",
      "ip daddr 203.0.113.0/24 meta l4proto { tcp, udp } th dport 443 accept",
      `meta l4proto { tcp, udp } th dport 53 add @dl_${k} { ip daddr . meta l4proto . th dport }`,
      `meta l4proto { tcp, udp } th dport 53 counter name "d_${k}" drop`,
      "ip daddr 198.51.100.7/32 accept",
      `ip daddr @n_${k} accept`,
      `meta l4proto { tcp, udp } ip daddr . th dport @np_${k} accept`,
      note,
      `counter name "d_${k}" drop`,
    ]);
    // web TCP (and no other port: no domain rule names one) goes to the gate on the bridge address, which the input chain lets in
    expect(script).toContain(`add rule inet banger_egress r_${k} tcp dport { 80, 443 } redirect to :${DEFAULT_GATE_PORT}\n`);
    expect(script).toContain(`add element inet banger_egress nat4 { 10.213.0.2 : jump r_${k} }\n`);
    expect(script).toContain(`add rule inet banger_egress i_${k} ip daddr 10.213.0.1 tcp dport ${DEFAULT_GATE_PORT} accept\n`);
    expect(script).toContain(`add rule inet banger_egress i_${k} ${note}\n`);
    expect(w.gate.listens).toEqual([`10.213.0.1:${DEFAULT_GATE_PORT}`]);
    // other guests: only the listed addresses, then the isolation
    const b = script.split("\n").filter((l) => l.startsWith(`add rule bridge banger_egress b_${k} `)).map((l) => l.slice(`add rule bridge banger_egress b_${k} `.length));
    expect(b).toEqual(["ether type ip ip daddr 203.0.113.0/24 meta l4proto { tcp, udp } th dport 443 accept", "ether type ip ip daddr 198.51.100.7/32 accept", "jump isolate"]);
    expect(script).toContain(`add rule inet banger_egress i_${k} ip daddr 10.213.0.1 meta l4proto { tcp, udp } th dport 53 accept\n`);
    expect(script).toContain(`flush set inet banger_egress n_${k}\n`);
    expect(script).toContain(`flush set inet banger_egress dl_${k}\n`);
    expect(script).toContain(`add element inet banger_egress fwd4 { 10.213.0.2 : jump f_${k} }\n`);
    expect(script).toContain("delete element inet banger_egress deny4 { 10.213.0.2 }\n");
  });

  test("the bridge resolver: an allowed name's addresses go into the VM's set before the answer; others NXDOMAIN and logged; strangers REFUSED", async () => {
    const w = await world({ egress: "pkgs.example.test,*.git.example.test:22,down.example.test" });
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    const k = listKey(tapName(vm.id));
    await w.engine.start("alpha");
    const ask = async (name: string, from = "10.213.0.2") => readAnswer(await w.dns.answer!(buildQuery(7, name), from));

    let n = w.host.exec.runs.length;
    expect(await ask("pkgs.example.test")).toEqual({ id: 7, rcode: 0, addrs: ["198.51.100.10"] });
    const el = `inet banger_egress n_${k} { 198.51.100.10 }`;
    expect(nftRuns(w, n)).toEqual([["-f -", `add element ${el}\ndelete element ${el}\nadd element inet banger_egress n_${k} { 198.51.100.10 timeout ${SET_TIMEOUT_FLOOR_S}s }\n`]]);

    // a name allowed on a port only: address . port
    n = w.host.exec.runs.length;
    expect((await ask("a.git.example.test")).addrs).toEqual(["198.51.100.22"]);
    expect(nftRuns(w, n)[0]![1]).toContain(`add element inet banger_egress np_${k} { 198.51.100.22 . 22 timeout`);

    // a name that resolves to the metadata address gets no answer and no element
    n = w.host.exec.runs.length;
    expect((await ask("meta.git.example.test")).addrs).toEqual([]);
    expect(nftRuns(w, n)).toEqual([]);

    n = w.host.exec.runs.length;
    expect((await ask("evil.example.net")).rcode).toBe(3);
    expect(nftRuns(w, n)).toEqual([]);
    const log = w.host.fs.files.get(join(vm.runtime.vmDir, EGRESS_LOG_FILE))!;
    expect(JSON.parse(log.trim().split("\n").at(-1)!)).toMatchObject({ dest: "evil.example.net", via: "dns", reason: "name not allowed" });

    expect((await ask("pkgs.example.test", "10.213.0.99")).rcode).toBe(5);
    // the upstream down: SERVFAIL at once, not an answer the guest waits out
    expect((await ask("down.example.test")).rcode).toBe(2);
  });

  test("a live change: the VM's chains rebuilt and sets flushed in one transaction; the resolver obeys the new list at once; none then cuts it off", async () => {
    const w = await world({ egress: "pkgs.example.test" });
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    const tap = tapName(vm.id);
    const k = listKey(tap);
    await w.engine.start("alpha");
    const ask = async (name: string) => readAnswer(await w.dns.answer!(buildQuery(1, name), "10.213.0.2"));
    expect((await ask("other.example.test")).rcode).toBe(3);
    let n = w.host.exec.runs.length;
    await w.engine.setEgress("alpha", "other.example.test");
    const runs = nftRuns(w, n);
    expect(runs.length).toBe(2); // the tables check, then one transaction
    expect(runs[1]![1]).toContain(`flush set inet banger_egress n_${k}\n`);
    expect((await ask("other.example.test")).addrs).toEqual(["198.51.100.20"]);
    expect((await ask("pkgs.example.test")).rcode).toBe(3);

    n = w.host.exec.runs.length;
    await w.engine.setEgress("alpha", "none");
    const cut = nftRuns(w, n);
    // cut off (deny4) before the allowlist chains go: never a moment with more than either allows
    expect(cut.map((c) => c[0])).toEqual(["list set inet banger_egress dl4", "-f -", `list chain inet banger_egress f_${k}`, "-f -", "-j list table inet banger_egress"]);
    expect(cut[1]![1]).toContain("add element inet banger_egress deny4 { 10.213.0.2 }");
    expect(cut[3]![1]).toBe(unlistScript("10.213.0.2", tap));
  });

  test("hostile values cannot become nft syntax: addresses, ports and tap names are checked before any script is made", () => {
    const tap = "bt-id0001";
    for (const bad of ["1.2.3.4 } ; flush ruleset", "1.2.3.4\nflush ruleset", "$(reboot)", "1.2.3.4'", "999.1.1.1"]) {
      expect(() => fillScript(tap, [{ addr: bad }], 60)).toThrow("not an IPv4 address");
      expect(() => listScript(bad, tap, "10.213.0.1", [])).toThrow("not an IPv4 address");
      expect(() => listScript("10.213.0.2", tap, "10.213.0.1", [{ kind: "cidr", addr: bad, prefix: 32 }])).toThrow("not an IPv4 address");
      expect(() => denyScript(bad, tap)).toThrow("not an IPv4 address");
      expect(() => allowScript(bad, tap)).toThrow("not an IPv4 address");
    }
    expect(() => denyScript("10.213.0.2", 'bt-a" } ; flush ruleset')).toThrow("bad tap name");
    expect(() => fillScript(tap, [{ addr: "1.2.3.4", port: "443 } ; flush ruleset" as unknown as number }], 60)).toThrow("not a port");
    expect(() => listKey('bt-a"; flush ruleset')).toThrow("bad tap name");
    // names never reach nft: only the addresses an allowed name resolved to
    expect(fillScript(tap, [], 60)).toBe("");
    expect(namedEntries(parseEgress("a.example.test:443,a.example.test:80"), "a.example.test", ["192.0.2.1"])).toEqual([{ addr: "192.0.2.1", port: 443 }, { addr: "192.0.2.1", port: 80 }]);
    expect(namedEntries(parseEgress("a.example.test:443,*.example.test"), "a.example.test", ["192.0.2.1"])).toEqual([{ addr: "192.0.2.1" }]);
    expect(namedEntries(parseEgress("all"), "a.example.test", ["192.0.2.1"])).toEqual([]);
  });
});

describe("net-tap: stop, reconcile, delete", () => {
  test("stop deletes the tap; the lease and the hosts entry stay while the VM exists", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    await w.engine.start("alpha");
    const before = w.host.exec.lines().length;
    await w.engine.stop("alpha");
    expect(w.host.exec.lines().slice(before)).toEqual([`ip link del dev ${tapName(vm.id)}`]);
    expect(w.leases.leaseOf(IP_POOL, vm.id)).toBe("10.213.0.2");
    expect(w.hosts()).toContain("alpha.vm");
  });

  test("reconcile of a dead VM removes the tap its scratch handles name", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    await w.engine.start("alpha");
    const pid = (await readHandlesFile(w.host.fs, vm.runtime.vmDir)).handles!.pid;
    w.host.procs.table.delete(pid); // the VM died while no daemon ran
    const before = w.host.exec.lines().length;
    const out = await w.make().reconcile();
    expect(out).toEqual([{ vm: "alpha", action: "demoted", source: "scratch", cleanupErrors: [] }]);
    expect(w.host.exec.lines().slice(before)).toEqual([`ip link del dev ${tapName(vm.id)}`]);
  });

  test("reconcile of a dead VM whose scratch file is gone still removes the tap (its name comes from the id)", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    await w.engine.start("alpha");
    const pid = (await readHandlesFile(w.host.fs, vm.runtime.vmDir)).handles!.pid;
    w.host.procs.table.delete(pid);
    w.host.fs.files.delete(join(vm.runtime.vmDir, "handles.json"));
    const before = w.host.exec.lines().length;
    await w.make().reconcile();
    expect(w.host.exec.lines().slice(before)).toContain(`ip link del dev ${tapName(vm.id)}`);
  });

  test("reconcile of a live VM without a scratch file re-finds its tap into the handles", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    await w.engine.start("alpha");
    w.host.fs.files.delete(join(vm.runtime.vmDir, "handles.json"));
    const e2 = w.make();
    const out = await e2.reconcile();
    expect(out[0]).toMatchObject({ action: "kept", source: "process" });
    expect(e2.cache.get(vm.id)!.tapDevice).toBe(tapName(vm.id));
    expect(w.host.exec.lines().filter((l) => l.startsWith("ip link del")).length).toBe(1); // only the pre-clean at start
  });

  test("delete gives the IP back and drops the hosts entry", async () => {
    const w = await world();
    const a = await w.engine.create({ name: "alpha", net: "tap" });
    await w.engine.create({ name: "beta", net: "tap" });
    await w.engine.start("alpha");
    await w.engine.delete("alpha");
    expect(w.leases.leaseOf(IP_POOL, a.id)).toBeNull();
    expect(w.hosts()).toBe(FOREIGN + block(["10.213.0.3\tbeta.vm"]));
    await w.engine.delete("beta");
    expect(w.hosts()).toBe(FOREIGN);
  });
});

describe("net-tap: pieces", () => {
  test("hosts block: replaced in place, other homes' blocks and foreign lines kept, removed when empty", () => {
    const other = "# BEGIN banger 0000000000 (managed by banger net-tap; do not edit)\n10.1.1.2\tx.vm\n# END banger 0000000000\n";
    const m = hostsMarker("/state");
    const once = withHostsBlock(FOREIGN + other, m, [{ ip: "10.213.0.2", name: "a.vm" }]);
    const twice = withHostsBlock(once, m, [{ ip: "10.213.0.3", name: "b.vm" }]);
    expect(twice).toBe(FOREIGN + other + block(["10.213.0.3\tb.vm"]));
    expect(withHostsBlock(twice, m, [])).toBe(FOREIGN + other);
    expect(withHostsBlock("", m, [])).toBe("");
  });

  test("a bind-mounted hosts file (EBUSY on rename) is rewritten in place", async () => {
    const host = fakeHost({ files: { "/etc/hosts": FOREIGN } });
    host.fs.writeAtomic = async () => {
      throw Object.assign(new Error("EBUSY: resource busy or locked, rename"), { code: "EBUSY" });
    };
    await rewriteHostsFile(host, "/etc/hosts", "banger x", [{ ip: "10.0.0.2", name: "a.vm" }]);
    expect(host.exec.runs.map((r) => [r.cmd, ...r.args])).toEqual([["sh", "-c", 'cat > "$1"', "sh", "/etc/hosts"]]);
    expect(String(host.exec.runs[0]!.opts.input)).toContain("10.0.0.2\ta.vm");
  });

  test("the in-place fallback passes a hostile path as one argument, never as shell text", async () => {
    const path = "/tmp/h'; rm -rf $(echo x) `id`\n;.hosts";
    const host = fakeHost({ files: { [path]: "" } });
    host.fs.writeAtomic = async () => {
      throw Object.assign(new Error("EBUSY"), { code: "EBUSY" });
    };
    await rewriteHostsFile(host, path, "banger x", [{ ip: "10.0.0.2", name: "a.vm" }]);
    expect(host.exec.runs[0]!.args).toEqual(["-c", 'cat > "$1"', "sh", path]);
  });

  test("a hosts file the daemon may not write: an error that says what to do", async () => {
    const host = fakeHost({ files: { "/etc/hosts": FOREIGN } });
    host.fs.writeAtomic = async () => {
      throw Object.assign(new Error("EACCES: permission denied"), { code: "EACCES" });
    };
    const err = await caught(rewriteHostsFile(host, "/etc/hosts", "banger x", [{ ip: "10.0.0.2", name: "a.vm" }]));
    expect(err.message).toBe("cannot write /etc/hosts for <name>.vm entries (EACCES): run the daemon as root or set BANGER_HOSTS_FILE to a file it may write");
    expect(host.exec.runs).toEqual([]);
  });

  test("subnets: canonical network, gateway first, guests up to broadcast-1; bad ones refused", () => {
    const s = parseSubnet("192.0.2.77/29");
    expect(s).toMatchObject({ cidr: "192.0.2.72/29", gateway: "192.0.2.73", prefix: 29 });
    expect([...guestAddresses(s)]).toEqual(["192.0.2.74", "192.0.2.75", "192.0.2.76", "192.0.2.77", "192.0.2.78"]);
    for (const bad of ["10.0.0.0", "10.0.0.0/8", "10.0.0.0/30", "300.0.0.0/24", "10.0.0.0/24/1", "x/24", "10.0.0.0/2$(reboot)"]) {
      expect(() => parseSubnet(bad)).toThrow("bad tap subnet");
    }
  });

  test("tap names fit IFNAMSIZ, MACs are stable and locally administered QEMU-style", () => {
    expect(tapName("0123456789abcdef")).toBe("bt-0123456789ab");
    expect(tapName("0123456789abcdef").length).toBeLessThanOrEqual(15);
    expect(tapName("a'b;c$(x)`d`")).toBe("bt-abcxd");
    expect(macFor("abc")).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(macFor("abc")).toBe(macFor("abc"));
    expect(macFor("abc")).not.toBe(macFor("abd"));
  });

  test("guest resolver: first non-loopback IPv4 nameserver, else none", () => {
    expect(guestResolver("nameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver 192.0.2.2\n")).toBe("192.0.2.1");
    expect(guestResolver("nameserver 127.0.0.1\nnameserver ::1\n")).toBe("");
  });

  test("hostile config fails tap VMs with a clear error and leaves user-net VMs (and the daemon) working", async () => {
    for (const opts of [{ bridge: "br0;reboot" }, { bridge: "a".repeat(16) }, { dns: "1.1.1.1 banger.debug=1" }, { subnet: "10.0.0.0/24 x" }]) {
      const w = await world({ opts });
      expect(w.log.of("warn").join("\n")).toMatch(/bad (bridge name|tap DNS server|tap subnet).*--net tap VMs cannot start/);
      const err = await caught(w.engine.create({ name: "t", net: "tap" }));
      expect(err.message).toMatch(/^bad (bridge name|tap DNS server|tap subnet)/);
      expect(w.ts.store.getVM("t")).toBeNull();
      await w.engine.create({ name: "u" });
      await w.engine.start("u");
      expect(w.host.exec.lines()).toEqual([]);
    }
  });

  test("a VM whose address is outside a changed subnet gets a new one at start, and the hosts file follows", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "alpha", net: "tap" });
    w.leases.release(IP_POOL, vm.id);
    rawDb(w.ts.store).query(`INSERT INTO leases (pool, value, vm_id, created_at) VALUES (?, '10.99.0.5', ?, 'then')`).run(IP_POOL, vm.id);
    await w.engine.start("alpha");
    expect(w.leases.leaseOf(IP_POOL, vm.id)).toBe("10.213.0.2");
    expect(w.driver.launches[0]!.boot.kernelArgs[0]).toBe("banger.ip=10.213.0.2/24");
    expect(w.ts.store.getVM("alpha")!.runtime.sshHost).toBe("10.213.0.2");
    expect(w.hosts()).toBe(FOREIGN + block(["10.213.0.2\talpha.vm"]));
  });

  test("no lease store in the context: a clear error, not a crash", async () => {
    const w = engineWorld({ paths: PATHS, newId: () => "id1", fakeProviders: { net: ["user"] } });
    stores.push(w.ts);
    await setupPlugins([{ plugin: createNetTapPlugin({ hostsFile: HOSTS }, {}), source: "t" }], {
      hooks: w.hooks, host: w.host, paths: PATHS, log: w.log, drivers: new Map(), providers: w.providers,
      store: { listVMs: () => [], getImage: () => null },
    });
    const err = await caught(w.make().create({ name: "a", net: "tap" }));
    expect(err.message).toContain("no lease table");
  });
});
