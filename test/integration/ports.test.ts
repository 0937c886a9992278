// Published ports through dist/banger with the fake VMM: its "fake-net" forwards
// by having the VM process itself listen on the host port (test/fixtures/fake-vm.mjs
// "fwd"), so a forward lives exactly as long as the "VM", like QEMU's slirp ones.
// Parsing, the record, errors, stop/start and a daemon kill -9; the real QEMU
// path is test/e2e/ports.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BANGER, ROOT, tempHome, killAndWait } from "../helpers/cli.ts";

const pluginDir = mkdtempSync(join(tmpdir(), "banger-ports-plugin-"));
for (const f of ["fake-vmm-plugin.ts", "fake-vm.mjs"]) copyFileSync(join(ROOT, "test/fixtures", f), join(pluginDir, f));
const kernel = join(pluginDir, "vmlinuz");
const rootfs = join(pluginDir, "rootfs.ext4");
writeFileSync(kernel, "not a kernel");
writeFileSync(rootfs, Buffer.alloc(1 << 20));

const h = tempHome("banger-ports-");
const vmPids: number[] = [];
const run = (args: string[]) => h.run(args, { BANGER_PLUGINS: join(pluginDir, "fake-vmm-plugin.ts") });

interface Port {
  proto: string;
  hostIP: string;
  hostPort: number;
  guestPort: number;
  boundPort: number;
  reach: string[];
}
interface VMView {
  name: string;
  alive: boolean;
  pid: number;
  spec: { ports?: Port[] };
  runtime: { state: string; lastError: string };
}
interface PortsView {
  vm: string;
  alive: boolean;
  ports: Port[];
  added?: Port;
  removed?: Port[];
}

/** What answers on 127.0.0.1:port: the fake guest's "guest:N", or null when nothing listens. */
function reach(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const c = connect({ host: "127.0.0.1", port });
    let got = "";
    c.on("data", (d) => (got += d.toString()));
    c.on("end", () => resolve(got.trim()));
    c.on("error", () => resolve(null));
  });
}

/** One line to a fake VM's API socket (fake-vm.mjs), its answer back. */
function askVm(sock: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(sock);
    let got = "";
    c.on("connect", () => c.write(line + "\n"));
    c.on("data", (d) => (got += d.toString()));
    c.on("end", () => resolve(got.trim()));
    c.on("error", reject);
  });
}

/** A free loopback port (the kernel's pick, released). */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen({ host: "127.0.0.1", port: 0 }, () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

function holdPort(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen({ host: "127.0.0.1", port: 0 }, () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

const byGuest = (ports: Port[], g: number) => ports.find((p) => p.guestPort === g)!;

let fixed = 0;
beforeAll(async () => {
  expect(existsSync(BANGER)).toBe(true);
  expect(run(["image", "import", "--name", "tiny", "--kernel", kernel, "--rootfs", rootfs, "--json"]).code).toBe(0);
  fixed = await freePort();
});
afterAll(async () => {
  await h.cleanup(vmPids);
  rmSync(pluginDir, { recursive: true, force: true });
});

describe("published ports (fake VMM)", () => {
  test("create --publish (repeated, -p, any host port, an exact one): forwarded, and shown with the host port chosen", async () => {
    const r = run(["vm", "create", "web", "--image", "tiny", "--driver", "fake", "--publish", "0:80", "-p", `127.0.0.1:${fixed}:81/tcp`, "--start", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const v = r.json<VMView>();
    vmPids.push(v.pid);
    const any = byGuest(v.spec.ports!, 80);
    expect(any).toMatchObject({ proto: "tcp", hostIP: "127.0.0.1", hostPort: 0, guestPort: 80 });
    expect(any.boundPort).toBeGreaterThan(0);
    expect(any.reach).toEqual([`127.0.0.1:${any.boundPort}`]);
    expect(byGuest(v.spec.ports!, 81)).toMatchObject({ hostPort: fixed, boundPort: fixed });
    expect(await reach(any.boundPort)).toBe("guest:80");
    expect(await reach(fixed)).toBe("guest:81");
    // vm list --json and vm show carry the same
    const listed = run(["vm", "list", "--json"]).json<VMView[]>().find((x) => x.name === "web")!;
    expect(byGuest(listed.spec.ports!, 80).boundPort).toBe(any.boundPort);
    expect(run(["vm", "show", "web"]).stdout).toContain(`port:      127.0.0.1:${any.boundPort}->80/tcp  (127.0.0.1:${any.boundPort})\n`);
    // and vm list's table has a PORTS column: host port → guest port, each
    const table = run(["vm", "list"]).stdout.split("\n");
    expect(table[0]).toMatch(/^NAME +STATE +ALIVE +IMAGE +SSH +EXPIRES +PORTS$/);
    expect(table.find((l) => l.startsWith("web "))).toEndWith(` ${any.boundPort}→80,${fixed}→81`);
  });

  test("bad specs are one line, exit 2, and make no VM", () => {
    for (const bad of ["70000:80", "80:0", "1.2.3.999:80:80", "80/sctp", "x;$(id)", "'", "8080:80\nrm -rf /", ""]) {
      const r = run(["vm", "create", "bad", "--image", "tiny", "--driver", "fake", "--publish", bad]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toStartWith("banger: bad port ");
    }
    const dup = run(["vm", "create", "bad", "--image", "tiny", "--driver", "fake", "-p", "9000:80", "-p", "9000:81"]);
    expect([dup.code, dup.stderr]).toEqual([1, "banger: 127.0.0.1:9000/tcp is already published (127.0.0.1:9000->80/tcp)\n"]);
    const again = run(["vm", "create", "bad", "--image", "tiny", "--driver", "fake", "-p", "8080", "-p", "0:8080"]);
    expect([again.code, again.stderr]).toEqual([1, "banger: guest port 8080/tcp is already published on 127.0.0.1\n"]);
    expect(run(["vm", "show", "bad"]).code).toBe(1);
  });

  test("port add on the running VM forwards at once; ls shows it; rm by guest port closes it", async () => {
    const a = run(["vm", "port", "add", "web", "0:90", "--json"]);
    expect(a.code).toBe(0);
    const added = a.json<PortsView>().added!;
    expect(added.boundPort).toBeGreaterThan(0);
    expect(await reach(added.boundPort)).toBe("guest:90");
    expect(run(["vm", "port", "add", "web", "0:91"]).stdout).toMatch(/^web: published 127\.0\.0\.1:\d+->91\/tcp \(127\.0\.0\.1:\d+\)\n$/);
    const ls = run(["vm", "port", "ls", "web", "--json"]).json<PortsView>();
    expect(ls.ports.map((p) => p.guestPort)).toEqual([80, 81, 90, 91]);
    expect(run(["vm", "port", "ls", "web"]).stdout).toContain(`127.0.0.1:${added.boundPort}->90/tcp`);
    const rm = run(["vm", "port", "rm", "web", "90"]);
    expect([rm.code, rm.stdout]).toEqual([0, `web: removed 127.0.0.1:${added.boundPort}->90/tcp\n`]);
    expect(await reach(added.boundPort)).toBeNull();
    // rm by the spec as bound
    const p91 = byGuest(run(["vm", "port", "ls", "web", "--json"]).json<PortsView>().ports, 91);
    expect(run(["vm", "port", "rm", "web", `127.0.0.1:${p91.boundPort}:91`]).code).toBe(0);
    expect(await reach(p91.boundPort)).toBeNull();
    expect(run(["vm", "port", "ls", "web", "--json"]).json<PortsView>().ports.map((p) => p.guestPort)).toEqual([80, 81]);
  });

  test("a host port in use, a duplicate, no match, a missing VM: one line each, the record unchanged", async () => {
    const held = await holdPort();
    try {
      const r = run(["vm", "port", "add", "web", `${held.port}:95`]);
      expect(r.code).toBe(1);
      expect(r.stderr).toBe(`banger: net fake-net: ports open: host port 127.0.0.1:${held.port}/tcp is in use (publishing guest port 95)\n`);
    } finally {
      held.server.close();
    }
    const dup = run(["vm", "port", "add", "web", `${fixed}:99`]);
    expect([dup.code, dup.stderr]).toEqual([1, `banger: 127.0.0.1:${fixed}/tcp is already published (127.0.0.1:${fixed}->81/tcp)\n`]);
    const none = run(["vm", "port", "rm", "web", "4242"]);
    expect(none.code).toBe(1);
    expect(none.stderr).toStartWith('banger: vm web publishes no port matching "4242" (published: 127.0.0.1:');
    expect(run(["vm", "port", "rm", "web", "a;b"]).code).toBe(2);
    expect(run(["vm", "port", "ls", "nope"]).stderr).toBe("banger: vm not found: nope\n");
    expect(run(["vm", "port", "add", "nope", "1:1"]).code).toBe(1);
    expect(run(["vm", "port", "ls", "web", "--json"]).json<PortsView>().ports.map((p) => p.guestPort)).toEqual([80, 81]);
  });

  test("stop clears where they are reached, start re-applies them on the same host ports; a port added while stopped comes up at start", async () => {
    const before = run(["vm", "port", "ls", "web", "--json"]).json<PortsView>().ports;
    expect(run(["vm", "stop", "web"]).code).toBe(0);
    const stopped = run(["vm", "port", "ls", "web", "--json"]).json<PortsView>();
    expect(stopped.alive).toBe(false);
    expect(stopped.ports.every((p) => p.reach.length === 0)).toBe(true);
    expect(await reach(byGuest(before, 80).boundPort)).toBeNull();
    expect(run(["vm", "port", "add", "web", "0:82"]).stdout).toBe("web: published 127.0.0.1:0->82/tcp (forwarded when it starts)\n");
    const s = run(["vm", "start", "web", "--json"]);
    expect(s.code).toBe(0);
    const v = s.json<VMView>();
    vmPids.push(v.pid);
    expect(byGuest(v.spec.ports!, 80).boundPort).toBe(byGuest(before, 80).boundPort);
    expect(await reach(byGuest(v.spec.ports!, 80).boundPort)).toBe("guest:80");
    expect(await reach(fixed)).toBe("guest:81");
    expect(await reach(byGuest(v.spec.ports!, 82).boundPort)).toBe("guest:82");
  });

  test("daemon kill -9: the forwards live on with the VM, the next daemon keeps them (no second forward, no error) and reopens one the VM lost", async () => {
    const before = run(["vm", "port", "ls", "web", "--json"]).json<PortsView>().ports;
    // the "VM" drops one forward on its own while no daemon watches
    const sock = run(["vm", "show", "web", "--json"]).json<{ runtime: { apiSockPath: string } }>().runtime.apiSockPath;
    killAndWait(h.daemonPid());
    expect(await askVm(sock, `fwd rm 127.0.0.1 ${fixed}`)).toBe("ok");
    expect(await reach(fixed)).toBeNull();
    const after = run(["vm", "show", "web", "--json"]).json<VMView>();
    expect([after.alive, after.runtime.state, after.runtime.lastError]).toEqual([true, "running", ""]);
    expect(after.spec.ports).toEqual(before);
    for (const p of before) expect(await reach(p.boundPort)).toBe(`guest:${p.guestPort}`);
    // removal still reaches the VM's forward after the restart
    expect(run(["vm", "port", "rm", "web", "82"]).code).toBe(0);
    expect(await reach(byGuest(before, 82).boundPort)).toBeNull();
  });

  test("a start whose exact host port is taken fails with that one line, and nothing stays running", async () => {
    expect(run(["vm", "stop", "web"]).code).toBe(0);
    const held = createServer();
    await new Promise<void>((r) => held.listen({ host: "127.0.0.1", port: fixed }, () => r()));
    try {
      const s = run(["vm", "start", "web"]);
      expect(s.code).toBe(1);
      // progress lines first (not a TTY), then the error as one line
      expect(s.stderr.trimEnd().split("\n").at(-1)).toBe(`banger: net fake-net: ports open: host port 127.0.0.1:${fixed}/tcp is in use (publishing guest port 81)`);
      const v = run(["vm", "show", "web", "--json"]).json<VMView>();
      expect([v.alive, v.runtime.state]).toEqual([false, "error"]);
    } finally {
      held.close();
    }
    expect(run(["vm", "delete", "web"]).code).toBe(0);
  });
});

describe("vm stats errors (fake VMM: no guest SSH)", () => {
  test("missing, bad name, not running, and a guest that cannot be read: one line each", () => {
    expect(run(["vm", "stats", "nope"]).stderr).toBe("banger: vm not found: nope\n");
    const bad = run(["vm", "stats", "a;b"]);
    expect([bad.code, bad.stderr]).toEqual([2, 'banger: invalid vm name "a;b": must match [a-z0-9][a-z0-9-]{0,62}\n']);
    expect(run(["vm", "create", "idle", "--image", "tiny", "--driver", "fake"]).code).toBe(0);
    const idle = run(["vm", "stats", "idle"]);
    expect([idle.code, idle.stderr]).toEqual([1, "banger: vm idle is not running (state: created); start it with `banger vm start idle`\n"]);
    expect(run(["vm", "stats", "--json"]).json()).toEqual({ vms: [] });
    expect(run(["vm", "stats"]).stdout).toBe("no running vms\n");
    const up = run(["vm", "start", "idle", "--json"]);
    vmPids.push(up.json<VMView>().pid);
    const noSsh = run(["vm", "stats", "idle"]);
    expect([noSsh.code, noSsh.stderr]).toEqual([1, "banger: vm idle has no SSH endpoint\n"]);
    // the all-VMs form leaves out a VM it cannot read rather than failing every other one
    expect(run(["vm", "stats", "--json"]).json()).toEqual({ vms: [] });
    expect(run(["vm", "delete", "idle", "--force"]).code).toBe(0);
  });

  test("a VM still starting (its guest booting) says so, not an SSH error", async () => {
    const p = Bun.spawn([BANGER, "vm", "create", "slowstart-s", "--image", "tiny", "--driver", "fake", "--start", "--json"], { env: { ...h.env, BANGER_PLUGINS: join(pluginDir, "fake-vmm-plugin.ts") }, stdout: "pipe", stderr: "pipe" });
    await Bun.sleep(700);
    const during = run(["vm", "stats", "slowstart-s"]);
    expect([during.code, during.stderr]).toEqual([1, "banger: vm slowstart-s is still starting: its stats come once its guest is up\n"]);
    expect(await p.exited).toBe(0);
    vmPids.push(JSON.parse(await new Response(p.stdout).text()).pid);
    expect(run(["vm", "delete", "slowstart-s", "--force"]).code).toBe(0);
  });
});
