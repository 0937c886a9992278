// Clones of a running tap VM (plugins/net-tap/clone.ts): the tap starts off
// the bridge, the guest is reached over link-local IPv6, re-addressed by
// readdress.sh, and only then does the tap join the bridge.
import { afterEach, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { definePlugin } from "../../src/core/plugin.ts";
import type { CloneNet } from "../../src/core/hooks.ts";
import { BangerError } from "../../src/shared/errors.ts";
import { renderScript } from "../../src/shared/quote.ts";
import type { SnapshotRecord, VMRecord } from "../../src/shared/model.ts";
import { createNetTapPlugin } from "../../plugins/net-tap/index.ts";
import { ISOLATED_SYSCTLS, linkLocalFor, readdressScript } from "../../plugins/net-tap/clone.ts";
import { macFor, tapName } from "../../plugins/net-tap/subnet.ts";
import READDRESS_SH from "../../plugins/net-tap/scripts/readdress.sh" with { type: "text" };
import { waitForGuest } from "../../plugins/guest/index.ts";
import { caught, engineWorld, fakeHost, sampleVM, type TestStore } from "../helpers/fakes.ts";

const PATHS = { home: "/state", imagesDir: "/state/images", vmsDir: "/state/vms" };
const stores: TestStore[] = [];
const dirs: string[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.cleanup();
  while (dirs.length) rmSync(dirs.pop()!, { recursive: true, force: true });
});

/** What the guest plugin does with a clone's CloneNet, recorded; `fail` makes it throw at that point instead. */
function guestStandIn(seen: { cloneNet?: CloneNet; calls: string[] }, fail?: "before-identity" | "skip-after") {
  return definePlugin({
    name: "guest-stand-in",
    setup(ctx) {
      ctx.hook("vm:start:after", async ({ cloneNet }) => {
        seen.cloneNet = cloneNet;
        if (!cloneNet?.dialVia) return;
        seen.calls.push(`dial ${cloneNet.dialVia.host}:${cloneNet.dialVia.port}`);
        if (fail === "before-identity") throw new BangerError("E_STATE", "the guest did not answer");
        seen.calls.push("run guestScript");
        if (fail === "skip-after") return;
        await cloneNet.afterIdentity?.();
        seen.calls.push("dial own address");
      });
    },
  });
}

async function world(fail?: "before-identity" | "skip-after") {
  let n = 0;
  const w = engineWorld({ paths: PATHS, newId: () => `id${String(++n).padStart(4, "0")}`, stopTimeoutMs: 1000, fakeProviders: { net: ["user"] }, defaultEgress: "all" });
  stores.push(w.ts);
  w.host.fs.files.set("/etc/hosts-test", "127.0.0.1\tlocalhost\n");
  const seen: { cloneNet?: CloneNet; calls: string[] } = { calls: [] };
  const plugin = createNetTapPlugin({ hostsFile: "/etc/hosts-test", serveDns: async () => ({ close: async () => {} }), serveGate: async () => ({ close: async () => {} }), resolve: async () => ({ addrs: [], ttl: 30 }) }, {});
  await w.load([plugin, guestStandIn(seen, fail)].map((p) => ({ plugin: p, source: "test" })));
  const engine = w.make();
  // the parent (its snapshot's VM) and the clone
  const parent = await engine.create({ name: "alpha", net: "tap" });
  const clone = await engine.create({ name: "c1", net: "tap" });
  const snap = { id: "s1", name: "s", vmId: parent.id, vmName: "alpha", state: "ready", dir: "/state/snapshots/s1", memory: true, spec: parent.spec, disks: [], sizeBytes: 0, freezeMs: 0, createdAt: "2026-01-01T00:00:00Z" } satisfies SnapshotRecord;
  // the engine's kill of the VM process, in the same sequence as the commands
  const kill = w.driver.kill.bind(w.driver);
  w.driver.kill = async (vm: VMRecord, h) => {
    w.host.exec.runs.push({ cmd: "<kill vm>", args: [vm.name], opts: {} });
    return kill(vm, h);
  };
  const startClone = (s: SnapshotRecord = snap) => engine.cache.withLock(clone.id, () => engine.startHeld(clone.id, () => {}, new AbortController().signal, { restoreFrom: `${s.dir}/state.mig`, snapshot: s }));
  const from = (i: number) => w.host.exec.lines().slice(i);
  return { ...w, engine, parent, clone, snap, seen, startClone, from, tap: tapName(clone.id) };
}

describe("net-tap: a clone of a running tap VM", () => {
  test("its tap starts off the bridge; the guest is dialled at the parent MAC's link-local address on it; after re-addressing the tap joins the bridge", async () => {
    const w = await world();
    const i = w.host.exec.runs.length;
    const vm = await w.startClone();
    expect(vm.runtime.state).toBe("running");
    const tap = w.tap;
    const lines = w.from(i);
    const made = lines.slice(lines.indexOf(`ip link del dev ${tap}`));
    const ll = linkLocalFor(macFor(w.clone.id));
    expect(made.slice(0, 4)).toEqual([`ip link del dev ${tap}`, `ip tuntap add dev ${tap} mode tap`, `sysctl -q -w ${ISOLATED_SYSCTLS(tap).join(" ")}`, `ip link set dev ${tap} up`]);
    // never on the bridge before the guest answers at its own MAC's address
    const ping = lines.indexOf(`ping -6 -n -q -c 1 -W 1 ${ll}%${tap}`);
    expect(ping).toBeGreaterThan(0);
    expect(lines.slice(0, ping).some((l) => l.includes("master"))).toBe(false);
    expect(lines.slice(ping)).toEqual([`ping -6 -n -q -c 1 -W 1 ${ll}%${tap}`, `ip link set dev ${tap} master banger0`, "ip neigh flush to 10.213.0.3 dev banger0"]);
    expect(ISOLATED_SYSCTLS(tap)).toEqual([`net.ipv6.conf.${tap}.disable_ipv6=0`, `net.ipv6.conf.${tap}.accept_dad=0`, `net.ipv6.neigh.${tap}.retrans_time_ms=50`, `net.ipv4.conf.${tap}.arp_ignore=8`, `net.ipv4.conf.${tap}.rp_filter=1`]);
    // the guest plugin was told where the guest answers meanwhile, and what to run there
    expect(w.seen.cloneNet!.dialVia).toEqual({ host: `${linkLocalFor(macFor(w.parent.id))}%${tap}`, port: 22 });
    expect(w.seen.cloneNet!.guestScript).toBe(readdressScript({ mac: macFor(w.clone.id), ip: "10.213.0.3", prefix: 24, gateway: "10.213.0.1" }));
    expect(w.seen.calls).toEqual([`dial ${w.seen.cloneNet!.dialVia!.host}:22`, "run guestScript", "dial own address"]);
    // QEMU gets the clone's own MAC (the guest takes it when readdress.sh runs)
    expect(w.driver.launches.at(-1)!.boot.nics).toEqual([{ tap, mac: macFor(w.clone.id) }]);
  });

  test("the guest takes its new MAC a moment later: pinged until it answers, then the tap joins the bridge", async () => {
    const w = await world();
    let n = 0;
    w.host.exec.on(/^ping -6/, () => (++n < 3 ? { exitCode: 1, stdout: "1 packets transmitted, 0 received, +1 errors" } : {}));
    await w.startClone();
    const lines = w.host.exec.lines();
    const first = lines.findIndex((l) => l.startsWith("ping -6"));
    expect(lines.slice(first)).toEqual([...Array(3).fill(lines[first]), `ip link set dev ${w.tap} master banger0`, "ip neigh flush to 10.213.0.3 dev banger0"]);
  });

  test("a restore of the VM's own snapshot (rollback) and a cold boot put the tap on the bridge at once, with no CloneNet", async () => {
    const w = await world();
    const own = { ...w.snap, vmId: w.clone.id };
    const i = w.host.exec.runs.length;
    await w.startClone(own);
    expect(w.from(i)).toContain(`ip link set dev ${w.tap} master banger0 up`);
    expect(w.from(i).some((l) => l.startsWith("ping") || l.startsWith("sysctl -q -w net.ipv6"))).toBe(false);
    expect(w.seen.cloneNet).toEqual({});
    expect(w.seen.calls).toEqual([]);
    const j = w.host.exec.runs.length;
    await w.engine.start("alpha");
    expect(w.from(j)).toContain(`ip link set dev ${tapName(w.parent.id)} master banger0 up`);
    expect(w.from(j).some((l) => l.startsWith("ping") || l.startsWith("sysctl -q -w net.ipv6"))).toBe(false);
    expect(w.seen.cloneNet).toEqual({});
  });

  test("the guest never takes its own MAC: the start fails, the tap never joined the bridge, the VM is killed, then the tap removed", async () => {
    const w = await world();
    w.host.exec.on(/^ping -6/, { exitCode: 1, stdout: "1 packets transmitted, 0 received" });
    const err = await caught(w.startClone());
    expect(err.message).toContain(`the clone's guest did not take its own MAC ${macFor(w.clone.id)} within 15 s`);
    const lines = w.host.exec.lines();
    expect(lines.some((l) => l.includes("master"))).toBe(false);
    // pinged again and again for the whole 15 s (on the fake clock), then the teardown
    const pings = lines.filter((l) => l.startsWith("ping -6")).length;
    expect(pings).toBeGreaterThan(100);
    expect(lines.slice(lines.findLastIndex((l) => l.startsWith("ping -6")) + 1)).toEqual(["<kill vm> c1", `ip link del dev ${w.tap}`]);
    expect(w.ts.store.getVM("c1")!.runtime.state).toBe("error");
    expect(err.undoFailures).toEqual([]);
  });

  test("undo at each step, in reverse: tap creation, its settings, bring-up, the launch, the guest's dial, the bridge", async () => {
    const steps: [string, RegExp | null, string][] = [
      ["tuntap add", /^ip tuntap add/, "cannot create tap"],
      ["sysctl", /^sysctl -q -w net\.ipv6/, "IPv6 must be available on the host"],
      ["link up", /^ip link set dev bt-\S+ up$/, "cannot bring tap"],
      ["bridge", /^ip link set dev \S+ master banger0$/, "cannot attach"],
    ];
    for (const [, m, message] of steps) {
      const w = await world();
      w.host.exec.on(m!, { exitCode: 2, stderr: "RTNETLINK answers: Operation not permitted" });
      const i = w.host.exec.runs.length;
      const err = await caught(w.startClone());
      expect(err.message).toContain(message);
      const lines = w.from(i);
      const at = lines.findIndex((l) => m!.test(l));
      const launched = w.driver.launches.length > 0;
      // after the failing step: the VM process (if it was launched) and then the tap, each once
      expect(lines.slice(at + 1).filter((l) => l.startsWith("<kill") || l.startsWith(`ip link del dev ${w.tap}`))).toEqual([...(launched ? ["<kill vm> c1"] : []), `ip link del dev ${w.tap}`]);
      expect(err.undoFailures).toEqual([]);
    }
    // the guest does not answer at all: no ping, no bridge, same teardown
    const w = await world("before-identity");
    const err = await caught(w.startClone());
    expect(err.message).toContain("the guest did not answer");
    const lines = w.host.exec.lines();
    expect(lines.some((l) => l.startsWith("ping") || l.includes("master"))).toBe(false);
    expect(lines.slice(-2)).toEqual(["<kill vm> c1", `ip link del dev ${w.tap}`]);
  });

  test("nothing re-addressed the guest (afterIdentity never called): the start fails rather than leave the clone cut off or put it on the bridge as its parent", async () => {
    const w = await world("skip-after");
    const err = await caught(w.startClone());
    expect(err.message).toContain("clone c1: nothing moved its guest off its parent's address");
    expect(w.host.exec.lines().some((l) => l.includes("master"))).toBe(false);
    expect(w.host.exec.lines().slice(-2)).toEqual(["<kill vm> c1", `ip link del dev ${w.tap}`]);
  });
});

describe("net-tap: a daemon killed during a clone's start", () => {
  /** The clone left as a killed daemon leaves it: its VMM runs, the row says starting, its tap on the bridge or not. */
  async function cutShort(o: { state: "starting" | "running"; onBridge: boolean }) {
    const w = await world();
    await w.startClone();
    const vm = w.ts.store.getVM("c1")!;
    vm.runtime.state = o.state;
    w.ts.store.upsertVM(vm);
    w.host.exec.on(`ip -o link show dev ${w.tap}`, { stdout: `9: ${w.tap}: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast ${o.onBridge ? "master banger0 " : ""}state UP mode DEFAULT\n` });
    const i = w.host.exec.runs.length;
    const out = await w.make().reconcile();
    return { w, out: out.find((r) => r.vm === "c1")!, lines: w.from(i), after: w.ts.store.getVM("c1")! };
  }

  test("its tap still off the bridge: the next daemon does not keep it (its guest may have its parent's address): VMM killed, tap removed, demoted with the reason", async () => {
    const { w, out, lines, after } = await cutShort({ state: "starting", onBridge: false });
    expect(out.action).toBe("demoted");
    expect(lines).toContain("<kill vm> c1");
    expect(lines.indexOf(`ip link del dev ${w.tap}`)).toBeGreaterThan(lines.indexOf("<kill vm> c1"));
    expect(after.runtime.state).toBe("stopped");
    expect(after.runtime.lastError).toBe(`not kept: ${w.tap} is off the bridge: a clone whose start was cut short before it had its own address`);
    expect([...w.host.procs.table.values()].filter((p) => p.cmdline?.includes(after.runtime.apiSockPath))).toEqual([]);
  });

  test("its tap already on the bridge (re-addressed), or a VM that was running: kept, as any VM is", async () => {
    for (const o of [{ state: "starting", onBridge: true }, { state: "running", onBridge: false }] as const) {
      const { w, out, lines, after } = await cutShort(o);
      expect(out.action).toBe("kept");
      expect(lines).not.toContain("<kill vm> c1");
      expect(lines).not.toContain(`ip link del dev ${w.tap}`);
      expect(after.runtime.state).toBe("running");
    }
  });
});

describe("net-tap clone pieces", () => {
  test("linkLocalFor is the kernel's EUI-64 address (checked against a real guest: 52:54:00:fc:08:5d → fe80::5054:ff:fefc:85d)", () => {
    expect(linkLocalFor("52:54:00:fc:08:5d")).toBe("fe80::5054:ff:fefc:85d");
    expect(linkLocalFor("02:00:00:00:00:00")).toBe("fe80::0:ff:fe00:0");
    expect(() => linkLocalFor("52:54:00:fc:08")).toThrow("not a MAC");
    expect(() => linkLocalFor("52:54:00:fc:08:zz")).toThrow("not a MAC");
  });

  /** Run readdress.sh with `ip` and `setsid` stand-ins that log what they were given. */
  function runReaddress(values: Record<string, string>) {
    const dir = mkdtempSync(join(tmpdir(), "banger-readdress-"));
    dirs.push(dir);
    const log = join(dir, "calls");
    for (const [name, body] of [
      ["ip", `printf 'ip %s\\n' "$*" >>'${log}'; case " $* " in *" -batch "*) cat >>'${log}' ;; esac`],
      ["setsid", `echo setsid >>'${log}'; exec "$@"`],
    ]) {
      writeFileSync(join(dir, name!), `#!/bin/bash\n${body}\n`);
      chmodSync(join(dir, name!), 0o755);
    }
    const script = renderScript(READDRESS_SH, { DEV: "lo", MAC: "52:54:00:43:e2:0b", ADDR: "10.213.0.3/24", GW: "10.213.0.1", LINK_LOCAL: "fe80::5054:ff:fe43:e20b", LOG: join(dir, "detached.log"), ...values });
    const p = Bun.spawnSync(["bash", "-s"], { stdin: new TextEncoder().encode(script), env: { PATH: `${dir}:/usr/bin:/bin` }, cwd: dir });
    const calls = () => (existsSync(log) ? readFileSync(log, "utf8") : "");
    // the detached part runs after the script has exited
    for (let i = 0; p.exitCode === 0 && i < 150 && !calls().endsWith("nodad\n"); i++) Bun.sleepSync(20);
    return { code: p.exitCode, stderr: p.stderr.toString(), calls: calls(), dir };
  }

  test("readdress.sh: IPv4 now (one ip -batch), the MAC and link-local address detached (one more), each value one word", () => {
    const r = runReaddress({});
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.calls).toBe(
      [
        "ip -4 -batch -",
        "addr flush dev lo",
        "addr add 10.213.0.3/24 dev lo",
        "route replace default via 10.213.0.1 dev lo",
        "neigh flush dev lo",
        "setsid",
        "ip -batch -",
        "link set dev lo address 52:54:00:43:e2:0b",
        "addr flush dev lo scope link",
        "addr replace fe80::5054:ff:fe43:e20b/64 dev lo nodad",
        "",
      ].join("\n"),
    );
  });

  test("readdress.sh: hostile values are refused before anything runs (quotes, ;, $(), newlines)", () => {
    const hostile = ["x'; touch pwned; '", "a;touch pwned", "$(touch pwned)", "`touch pwned`", "10.0.0.1/24\naddr add 1.2.3.4/8 dev lo", "52:54:00:43:e2:0b\nlink set lo down"];
    for (const key of ["DEV", "MAC", "ADDR", "GW", "LINK_LOCAL"]) {
      for (const v of hostile) {
        const r = runReaddress({ [key]: v });
        expect(r.code).toBe(2);
        expect(r.stderr).toContain("bad ");
        expect(r.calls).toBe("");
        expect(existsSync(join(r.dir, "pwned"))).toBe(false);
      }
    }
    // a NIC the guest does not have: one line, nothing changed
    const r = runReaddress({ DEV: "nosuchnic0" });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("no nosuchnic0 in the guest");
    expect(r.calls).toBe("");
  });
});

describe("guest plugin: a clone's CloneNet", () => {
  async function guestWorld() {
    const host = fakeHost();
    const vm = sampleVM({ name: "c1", net: "tap" });
    vm.runtime.sshHost = "10.213.0.3";
    vm.runtime.sshPort = 22;
    const k = `${vm.runtime.vmDir}/keys`;
    for (const [p, v] of [[`${k}/id_ed25519`, "OWN-PRIVATE"], [`${k}/id_ed25519.pub`, "ssh-ed25519 OWN"], [`${k}/host_ed25519_dropbear`, "OWN-HOSTKEY"], [`${k}/host_ed25519.pub`, "ssh-ed25519 OWNHOST"], ["/snap/keys/id_ed25519", "PARENT-PRIVATE"], ["/snap/keys/host_ed25519.pub", "ssh-ed25519 PARENTHOST"]]) host.fs.files.set(p!, v!);
    host.procs.add(4242, 1);
    const events: string[] = [];
    const cloneNet: CloneNet = {
      dialVia: { host: "fe80::5054:ff:fe00:1%bt-c1", port: 22 },
      guestScript: "READDRESS",
      afterIdentity: async () => {
        events.push(`afterIdentity (first connection closed: ${host.ssh.conns[0]!.closed})`);
      },
    };
    const wait = () => waitForGuest(host, vm, 4242, { timeoutMs: 30_000, progress: () => {}, signal: new AbortController().signal, restored: true, cloneOf: "/snap", cloneNet });
    return { host, vm, events, cloneNet, wait };
  }

  test("dial via dialVia with the parent's keys, identity, guestScript on that connection, close, afterIdentity, then the own address with the own keys", async () => {
    const g = await guestWorld();
    await g.wait();
    const d = g.host.ssh.dials;
    expect(d.map((t) => `${t.host}:${t.port} ${t.privateKey}`)).toEqual(["fe80::5054:ff:fe00:1%bt-c1:22 PARENT-PRIVATE", "10.213.0.3:22 OWN-PRIVATE"]);
    const first = g.host.ssh.conns[0]!;
    // the identity first (whatever form it takes), the re-addressing last, on the same connection
    expect(first.execs.length + first.scripts.length).toBeGreaterThan(1);
    expect(first.scripts.at(-1)).toBe("READDRESS");
    expect(first.scripts.slice(0, -1)).not.toContain("READDRESS");
    expect(g.events).toEqual(["afterIdentity (first connection closed: true)"]);
  });

  test("a failing guestScript or afterIdentity fails the start at once (the parent's keys are gone: no retry)", async () => {
    const g = await guestWorld();
    g.host.ssh.respond = (s) => (s === "READDRESS" ? { exitCode: 2, stderr: "bad MAC: x\n" } : {});
    expect((await caught(g.wait())).message).toBe("moving clone c1 to its own network address failed (exit 2): bad MAC: x");
    expect(g.host.ssh.dials.length).toBe(1);
    expect(g.events).toEqual([]);

    const h = await guestWorld();
    h.cloneNet.afterIdentity = async () => {
      throw new BangerError("E_STATE", "the clone's guest did not take its own MAC");
    };
    expect((await caught(h.wait())).message).toContain("did not take its own MAC");
    expect(h.host.ssh.dials.length).toBe(1);
  });
});
