// The guest plugin's wait for a guest: how many SSH dials, what runs in the guest, and the connection the
// daemon's pool adopts — for a cold boot, a restore (rollback) and a clone.
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import guestPlugin, { cloneIdentityValues, inBash, waitForGuest, READY_MARKER } from "../../plugins/guest/index.ts";
import { HookEngine } from "../../src/core/hooks.ts";
import { setupPlugins } from "../../src/core/loader.ts";
import { Providers } from "../../src/core/providers.ts";
import { SSHPool } from "../../src/daemon/ssh-pool.ts";
import { renderScript } from "../../src/shared/quote.ts";
import { vmPaths } from "../../src/shared/paths.ts";
import type { ExecStreamOptions, GuestSSH, SSHTarget } from "../../src/host/types.ts";
import type { VMMDriver } from "../../src/vmm/driver.ts";
import { CLOCK_RESEED_ELF } from "../../plugins/guest/clock-reseed-elf.ts";
import CLONE_IDENTITY_SH from "../../plugins/guest/scripts/clone-identity.sh" with { type: "text" };
import { fakeHost, recordingOp, sampleImage, sampleVM, testLogger } from "../helpers/fakes.ts";

interface Conn extends GuestSSH {
  target: SSHTarget;
  execs: string[];
  stdinSeen: string[];
  uploads: string[];
  scripts: string[];
}

/**
 * A guest that answers the clock exchange as set-clock.sh does ("ready", its clock per ping, then it reads the
 * offset and exits without waiting for the end of its stdin), recording every dial, exec and close.
 */
function guestDialer(o: { exitCode?: number; stderr?: string } = {}) {
  const dials: Conn[] = [];
  return {
    dials,
    async dial(target: SSHTarget): Promise<GuestSSH> {
      let closed = false;
      const conn: Conn = {
        target,
        execs: [],
        stdinSeen: [],
        uploads: [],
        scripts: [],
        async exec(command: string, opts: ExecStreamOptions = {}) {
          conn.execs.push(command);
          const out = (t: string) => opts.onStdout?.(new TextEncoder().encode(t));
          out("ready\n");
          const it = (opts.stdin as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]();
          for (let i = 0; i < 4; i++) {
            const r = await it.next();
            if (r.done) break;
            conn.stdinSeen.push(new TextDecoder().decode(r.value));
            if (i < 3) out("1000.000000\n");
          }
          if (o.stderr) opts.onStderr?.(new TextEncoder().encode(o.stderr));
          return o.exitCode ?? 0;
        },
        async runScript(script: string) {
          conn.scripts.push(script);
          return { exitCode: 0, stdout: "", stderr: "" };
        },
        async upload(path: string) {
          conn.uploads.push(path);
        },
        close() {
          closed = true;
        },
        get closed() {
          return closed;
        },
      };
      dials.push(conn);
      return conn;
    },
  };
}

const SNAP = "/state/snapshots/parent@s1";

function setup(o: { exitCode?: number; stderr?: string; hostKey?: string } = {}) {
  const host = fakeHost();
  const vm = sampleVM({ name: "c1", sshPort: 2222 });
  const keys = vmPaths(vm.runtime.vmDir);
  host.fs.files.set(keys.clientKey, "OWN-PRIVATE");
  host.fs.files.set(`${keys.clientKey}.pub`, "ssh-ed25519 AAAAownpub banger\n");
  host.fs.files.set(keys.hostKey, o.hostKey ?? "own-host-key-bytes");
  host.fs.files.set(keys.hostPubKey, "ssh-ed25519 AAAAownhost\n");
  host.fs.files.set(join(SNAP, "keys", "id_ed25519"), "PARENT-PRIVATE");
  host.fs.files.set(join(SNAP, "keys", "host_ed25519.pub"), "ssh-ed25519 AAAAparenthost\n");
  host.fs.files.set(vm.runtime.logPath, `...\n${READY_MARKER}\n`);
  host.procs.add(4242, 1);
  const dialer = guestDialer(o);
  host.ssh = dialer as never;
  return { host, vm, dials: dialer.dials };
}

const opts = (over: { restored?: boolean; cloneOf?: string; debug?: (m: string) => void } = {}) => ({ timeoutMs: 60_000, progress: () => {}, signal: new AbortController().signal, ...over });

describe("waitForGuest", () => {
  test("a clone: one dial with its parent's keys running clock and identity in ONE exec (no upload, no script, no other exec); that connection stays open and is the one returned (no second handshake)", async () => {
    const { host, vm, dials } = setup();
    const debug: string[] = [];
    const conn = await waitForGuest(host, vm, 4242, opts({ restored: true, cloneOf: SNAP, debug: (m) => void debug.push(m) }));
    expect(dials.map((d) => [d.target.privateKey, d.target.hostKey, d.target.port])).toEqual([["PARENT-PRIVATE", "ssh-ed25519 AAAAparenthost", 2222]]);
    const [first] = dials;
    expect(first!.execs.length).toBe(1);
    expect([first!.uploads, first!.scripts]).toEqual([[], []]);
    const cmd = first!.execs[0]!;
    expect(cmd.startsWith("S='")).toBe(true);
    for (const part of ["EPOCHREALTIME", "RNDRESEEDCRNG", "/proc/sys/kernel/hostname", "/etc/dropbear/dropbear_ed25519_host_key", "ssh-ed25519 AAAAownpub banger", "NAME='\\''c1'\\''"]) expect(cmd).toContain(part);
    // the host key as printf %b escapes: "own" = 6f 77 6e
    expect(cmd).toContain("\\x6f\\x77\\x6e");
    // three pings, then the offset
    expect(first!.stdinSeen.slice(0, 3)).toEqual(["t\n", "t\n", "t\n"]);
    expect(first!.stdinSeen[3]).toMatch(/^-?\d+\n$/);
    expect(first!.closed).toBe(false);
    expect(conn).toBe(first!);
    expect(debug.length).toBe(1);
    expect(debug[0]).toMatch(/^c1: guest answering: dial \(parent's keys\) \d+ ms, clock \+ identity exec \d+ ms; \d+ ms in all \(the identity connection stays open\)$/);
  });

  test("a restored VM (rollback): one dial with its own keys, the clock exec alone (no identity), the connection returned open", async () => {
    const { host, vm, dials } = setup();
    const conn = await waitForGuest(host, vm, 4242, opts({ restored: true }));
    expect(dials.length).toBe(1);
    expect(dials[0]!.target.privateKey).toBe("OWN-PRIVATE");
    expect(dials[0]!.execs.length).toBe(1);
    expect(dials[0]!.execs[0]).toContain("EPOCHREALTIME");
    expect(dials[0]!.execs[0]).not.toContain("RNDRESEEDCRNG");
    // no hwclock run (it busy-waits for a second boundary)
    expect(dials[0]!.execs[0]).not.toMatch(/^\s*hwclock/m);
    expect(conn).toBe(dials[0]!);
    expect(conn.closed).toBe(false);
  });

  test("a cold boot: after the console marker, one dial with its own keys and nothing run, the connection returned open", async () => {
    const { host, vm, dials } = setup();
    const conn = await waitForGuest(host, vm, 4242, opts());
    expect(dials.map((d) => [d.target.privateKey, d.execs.length])).toEqual([["OWN-PRIVATE", 0]]);
    expect(conn.closed).toBe(false);
  });

  test("a failed identity exec is one line naming the clone and the guest's reason; no second dial, nothing left open", async () => {
    const { host, vm, dials } = setup({ exitCode: 3, stderr: "the clone's dropbear is not listening (see /var/log/banger/dropbear.log)\n" });
    const e = await waitForGuest(host, vm, 4242, opts({ restored: true, cloneOf: SNAP })).catch((x: Error) => x);
    expect((e as Error).message).toBe("giving clone c1 its own identity failed (exit 3): the clone's dropbear is not listening (see /var/log/banger/dropbear.log)");
    expect(dials.length).toBe(1);
    expect(dials[0]!.closed).toBe(true);
  });
});

describe("the guest plugin hands its connection to the pool", () => {
  async function loaded() {
    const { host, vm, dials } = setup();
    const hooks = new HookEngine();
    const adopted: { vm: string; conn: GuestSSH }[] = [];
    const image = sampleImage();
    await setupPlugins([{ plugin: guestPlugin, source: "builtin" }], {
      hooks,
      host,
      paths: { home: "/state", imagesDir: "/state/images", vmsDir: "/state/vms" },
      log: testLogger(),
      store: { listVMs: () => [vm], getImage: () => image },
      drivers: new Map<string, VMMDriver>(),
      providers: new Providers(),
      adoptSSH: (v, conn) => void adopted.push({ vm: v.id, conn }),
    });
    return { host, vm, dials, hooks, adopted };
  }

  test("vm:start:after of a clone adopts the one connection its identity was given over; a start failing later closes it", async () => {
    const { vm, dials, hooks, adopted } = await loaded();
    const op = recordingOp({ vm });
    await hooks.run("vm:start:after", { vm, handles: { pid: 4242 } as never, progress: () => {}, signal: op.signal, op, restored: true, snapshot: { vmId: "parent", dir: SNAP } as never });
    expect(dials.length).toBe(1);
    expect(adopted.map((a) => a.vm)).toEqual([vm.id]);
    expect(adopted[0]!.conn).toBe(dials[0]!);
    expect(adopted[0]!.conn.closed).toBe(false);
    await op.unwind();
    expect(adopted[0]!.conn.closed).toBe(true);
  });

  test("vm:start:before builds the seed initrd for a boot, not for a restore (the image's own initrd stays on the command line)", async () => {
    const { host, vm, hooks } = await loaded();
    const boot = () => ({ kernelPath: "/k", initrdPaths: [sampleImage().initrdPath!], kernelArgs: [], disks: [], netArgs: [] });
    const restoring = boot();
    await hooks.run("vm:start:before", { vm, boot: restoring, handles: {} as never, progress: () => {}, op: recordingOp({ vm }), restored: true });
    expect(restoring.initrdPaths).toEqual([sampleImage().initrdPath!]);
    expect(host.fs.ops.filter((o) => o.includes("initrd"))).toEqual([]);
    await host.fs.writeFile(sampleImage().initrdPath!, "base initrd");
    const booting = boot();
    await hooks.run("vm:start:before", { vm, boot: booting, handles: {} as never, progress: () => {}, op: recordingOp({ vm }), restored: false });
    expect(booting.initrdPaths).toEqual([join(vm.runtime.vmDir, "initrd.img")]);
    expect(host.fs.files.has(join(vm.runtime.vmDir, "initrd.img"))).toBe(true);
  });

  test("a plugin context without a pool closes what it is handed", async () => {
    const { host } = setup();
    let ctxAdopt: ((vm: never, conn: GuestSSH) => void) | undefined;
    await setupPlugins([{ plugin: { name: "probe", setup: (ctx) => void (ctxAdopt = ctx.adoptSSH) }, source: "test" }], {
      hooks: new HookEngine(),
      host,
      paths: { home: "/state", imagesDir: "/state/images", vmsDir: "/state/vms" },
      log: testLogger(),
      store: { listVMs: () => [], getImage: () => null },
      drivers: new Map<string, VMMDriver>(),
      providers: new Providers(),
    });
    const conn = await guestDialer().dial({ host: "", port: 1, user: "root", privateKey: "" });
    ctxAdopt!(sampleVM() as never, conn);
    expect(conn.closed).toBe(true);
  });
});

describe("SSHPool.adopt", () => {
  test("the next get() uses the adopted connection without dialling; a closed one is redialled; adopting again closes the one held", async () => {
    const d = guestDialer();
    let poolDials = 0;
    const pool = new SSHPool(async () => {
      poolDials++;
      return d.dial({ host: "", port: 1, user: "root", privateKey: "" });
    });
    const vm = sampleVM();
    const a = await d.dial({ host: "", port: 1, user: "root", privateKey: "a" });
    pool.adopt(vm.id, a);
    expect(await pool.get(vm)).toBe(a);
    expect(poolDials).toBe(0);
    const b = await d.dial({ host: "", port: 1, user: "root", privateKey: "b" });
    pool.adopt(vm.id, b);
    await Bun.sleep(0);
    expect([a.closed, b.closed]).toEqual([true, false]);
    expect(await pool.get(vm)).toBe(b);
    b.close();
    const c = await pool.get(vm);
    expect(poolDials).toBe(1);
    expect(c).not.toBe(b);
  });
});

describe("SSHPool connectors (ctx.connectGuest)", () => {
  test("asked in order with the VM's recorded handles before the dial: the first connection wins, null passes on, all null dials; a VM with no handles file is dialled", async () => {
    const d = guestDialer();
    const host = fakeHost();
    let dials = 0;
    const pool = new SSHPool(async () => {
      dials++;
      return d.dial({ host: "", port: 1, user: "root", privateKey: "" });
    }, host.fs);
    const asked: string[] = [];
    const mine = await d.dial({ host: "", port: 1, user: "root", privateKey: "mine" });
    let give = true;
    pool.addConnector(async (v, h) => (asked.push(`first ${v.name} ${h.pid}`), null));
    pool.addConnector(async (v, h) => (asked.push(`second ${v.name} ${h.pid}`), give ? mine : null));
    pool.addConnector(async () => (asked.push("third"), null));
    const vm = sampleVM({ name: "box" });
    host.fs.files.set(vmPaths(vm.runtime.vmDir).handles, JSON.stringify({ pid: 4242 }));
    expect(await pool.get(vm)).toBe(mine);
    expect(asked).toEqual(["first box 4242", "second box 4242"]);
    expect(dials).toBe(0);
    // held now: nobody is asked again until it closes
    expect(await pool.get(vm)).toBe(mine);
    expect(asked).toHaveLength(2);
    mine.close();
    give = false;
    const dialled = await pool.get(vm);
    expect(dialled).not.toBe(mine);
    expect(asked.slice(2)).toEqual(["first box 4242", "second box 4242", "third"]);
    expect(dials).toBe(1);
    const other = sampleVM({ name: "bare" });
    host.fs.files.delete(vmPaths(other.runtime.vmDir).handles);
    pool.drop(vm.id);
    asked.length = 0;
    await pool.get(other);
    expect(asked).toEqual([]);
    expect(dials).toBe(2);
  });
});

describe("clone identity values reach the guest's bash intact", () => {
  test("every byte of the host key through printf %b, and a hostile key comment, unchanged by real bash", async () => {
    const { host, vm } = setup();
    const all = new Uint8Array(256).map((_, i) => i);
    host.fs.readBytes = async () => all;
    host.fs.files.set(`${vmPaths(vm.runtime.vmDir).clientKey}.pub`, "ssh-ed25519 AAAAx it's; $(reboot) `id` \"q\"\n");
    const values = await cloneIdentityValues(host, vm);
    expect(values.ENTROPY).toMatch(/^[0-9a-f]{128}$/);
    // the clone script's own lines for these values (checked below), run by bash against files in a temp dir
    const lines = [`printf '%s\\n' "$AUTHORIZED_KEY" >`, `printf '%b' "$HOST_KEY" >`, `printf '%s' "$ENTROPY" >`, `echo "$NAME" >`, `printf '%b' "$CLOCK_RESEED" >`];
    for (const l of lines) expect(CLONE_IDENTITY_SH).toContain(l);
    const probe = lines.map((l, i) => `${l}"$1/${i}"\n`).join("");
    const dir = (await Bun.$`mktemp -d`.text()).trim();
    try {
      const p = Bun.spawnSync(["bash", "-c", renderScript(probe, values), "probe", dir]);
      expect(p.exitCode).toBe(0);
      expect(await Bun.file(join(dir, "0")).text()).toBe("ssh-ed25519 AAAAx it's; $(reboot) `id` \"q\"\n");
      expect(new Uint8Array(await Bun.file(join(dir, "1")).arrayBuffer())).toEqual(all);
      expect(await Bun.file(join(dir, "2")).text()).toBe(values.ENTROPY);
      expect(await Bun.file(join(dir, "3")).text()).toBe("c1\n");
      expect(new Uint8Array(await Bun.file(join(dir, "4")).arrayBuffer())).toEqual(new Uint8Array(CLOCK_RESEED_ELF));
    } finally {
      await Bun.$`rm -rf ${dir}`;
    }
  });
});

describe("the clock-and-reseed program a clone runs (plugins/guest/clock-reseed-elf.ts)", () => {
  // it runs here as it will in an x86-64 guest (other guests use date and perl); the clock it sets is checked
  // by the e2e tests (a clone's clock within 0.2 s of the host's): this host's clock is not ours to move
  const run = async (stdin: Uint8Array, asNobody: boolean) => {
    const dir = (await Bun.$`mktemp -d`.text()).trim();
    try {
      const path = join(dir, "clock-reseed");
      await Bun.write(path, CLOCK_RESEED_ELF);
      await Bun.$`chmod 755 ${dir} ${path}`;
      const p = Bun.spawnSync([...(asNobody ? ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"] : []), path], { stdin });
      return [p.exitCode, p.signalCode ?? null];
    } finally {
      await Bun.$`rm -rf ${dir}`;
    }
  };
  const isRoot = process.getuid!() === 0;
  test.skipIf(process.arch !== "x64")("no offset on stdin: the CRNG reseed alone, done as root (exit 0)", async () => {
    expect(await run(new Uint8Array(0), false)).toEqual([isRoot ? 0 : 1, null]);
  });
  test.skipIf(process.arch !== "x64" || !isRoot || !Bun.which("setpriv"))("refused to nobody: exit 1 (EPERM), with an offset and without", async () => {
    expect(await run(new Uint8Array(8), true)).toEqual([1, null]);
    expect(await run(new Uint8Array(0), true)).toEqual([1, null]);
  });
  // strace shows the time it asks for even though nobody may not set it: exactly the clock it read plus the offset
  test.skipIf(process.arch !== "x64" || !isRoot || !Bun.which("setpriv") || !Bun.which("strace"))("the clock it sets is the one it read plus the offset (ns carry and negative offsets included)", async () => {
    const dir = (await Bun.$`mktemp -d`.text()).trim();
    try {
      const path = join(dir, "clock-reseed");
      await Bun.write(path, CLOCK_RESEED_ELF);
      await Bun.$`chmod 755 ${dir} ${path}`;
      for (const offsetNs of [3_600_000_000_123n, -3_600_000_000_001n, 999_999_999n, 0n]) {
        const stdin = new Uint8Array(8);
        new DataView(stdin.buffer).setBigInt64(0, offsetNs, true);
        const p = Bun.spawnSync(["strace", "-qq", "-e", "trace=clock_gettime,clock_settime", "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", path], { stdin });
        const err = p.stderr.toString();
        const ts = (call: string) => {
          const m = [...err.matchAll(new RegExp(`${call}\\(CLOCK_REALTIME, \\{tv_sec=(\\d+), tv_nsec=(\\d+)\\}\\)`, "g"))].at(-1);
          if (!m) throw new Error(`no ${call} in: ${err}`);
          return BigInt(m[1]!) * 1_000_000_000n + BigInt(m[2]!);
        };
        expect(ts("clock_settime") - ts("clock_gettime")).toBe(offsetNs);
        expect(err).toContain("EPERM");
      }
    } finally {
      await Bun.$`rm -rf ${dir}`;
    }
  });
});

describe("inBash", () => {
  const script = `set -e\nprintf '%s|' "it's" "$1" ';$(id)'\n[[ -n x ]] && echo bash`;
  test.each(["bash", "dash"].filter((s) => Bun.which(s)))("run by %s as the login shell: the script runs in bash, hostile text intact", (shell) => {
    const p = Bun.spawnSync([shell, "-c", inBash(script)]);
    expect([p.exitCode, p.stdout.toString()]).toEqual([0, "it's||;$(id)|bash\n"]);
  });
});
