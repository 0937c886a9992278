// dist/banger for real: auto-started daemon, kill -9 of daemon and VMs,
// reconcile outcomes, reused PIDs, version handshake, SIGTERM, bad input.
// "VMs" are real node processes serving a unix socket (test/fixtures/fake-vmm-plugin.ts),
// loaded as a user plugin from a directory outside the repo.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alive, BANGER, ROOT, tempHome, waitFor, killAndWait } from "../helpers/cli.ts";

const pluginDir = mkdtempSync(join(tmpdir(), "banger-user-plugin-"));
const PLUGIN = join(pluginDir, "fake-vmm-plugin.ts");
copyFileSync(join(ROOT, "test/fixtures/fake-vmm-plugin.ts"), PLUGIN);
copyFileSync(join(ROOT, "test/fixtures/fake-vm.mjs"), join(pluginDir, "fake-vm.mjs"));
const kernel = join(pluginDir, "vmlinuz");
const rootfs = join(pluginDir, "rootfs.ext4");
writeFileSync(kernel, "not a kernel");
writeFileSync(rootfs, Buffer.alloc(1 << 20));

const h = tempHome();
const vmPids: number[] = [];
const run = (args: string[], env: Record<string, string> = {}) => h.run(args, { BANGER_PLUGINS: PLUGIN, ...env });

interface VMView {
  name: string;
  alive: boolean;
  pid: number;
  runtime: { state: string; vmDir: string; lastError: string };
}
const vm = (name: string) => run(["vm", "show", name, "--json"]).json<VMView>();

beforeAll(() => {
  expect(existsSync(BANGER)).toBe(true);
});
afterAll(async () => {
  await h.cleanup(vmPids);
  rmSync(pluginDir, { recursive: true, force: true });
});

describe("auto-started daemon", () => {
  test("vm list --json auto-starts the daemon on a fresh home", () => {
    const r = run(["vm", "list", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.json()).toEqual([]);
    const pid = h.daemonPid();
    expect(alive(pid)).toBe(true);
    // setsid: the daemon leads its own session, so our process group's signals never reach it
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    expect(Number(fields[3])).toBe(pid); // session id (field 6)
    expect(statSync(join(h.home, "bangerd.sock")).mode & 0o777).toBe(0o600);
    expect(statSync(h.home).mode & 0o777).toBe(0o700);
  });

  test("no TCP listener: the daemon holds no inet socket at all", () => {
    const pid = h.daemonPid();
    // socket inodes the daemon holds, vs every TCP/TCP6 socket the kernel lists
    const inodes = new Set(
      readdirSync(`/proc/${pid}/fd`).flatMap((fd) => {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          return m ? [m[1]!] : [];
        } catch {
          return [];
        }
      }),
    );
    expect(inodes.size).toBeGreaterThan(0); // it does hold its unix socket
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      const rows = readFileSync(table, "utf8").trim().split("\n").slice(1);
      for (const row of rows) expect(inodes.has(row.trim().split(/\s+/)[9]!)).toBe(false);
    }
  });

  test("a command is one request: the version handshake rides on it, no health call first", () => {
    const received = () => run(["daemon", "status", "--json"]).json<{ requestsReceived: number }>().requestsReceived;
    const before = received();
    for (const args of [["vm", "list", "--json"], ["vm", "list"], ["plugin", "list", "--json"]]) expect(run(args).code).toBe(0);
    // the three commands, and the first status call itself
    expect(received() - before).toBe(4);
  });

  test("one daemon per home: a second one refuses", () => {
    const r = run(["daemon"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("another banger daemon already runs");
  });

  test("kill -9 of the daemon: the next command starts a new one", () => {
    const old = h.daemonPid();
    killAndWait(old);
    expect(existsSync(join(h.home, "bangerd.sock"))).toBe(true); // stale socket left behind
    const r = run(["vm", "list", "--json"]);
    expect(r.code).toBe(0);
    expect(h.daemonPid()).not.toBe(old);
  });

  test("plugin list shows built-ins then the user plugin from outside the repo", () => {
    const names = run(["plugin", "list", "--json"]).json<{ name: string; source: string }[]>().map((p) => p.name);
    expect(names.slice(0, 3)).toEqual(["qemu", "storage-dm", "storage"]);
    expect(names.at(-1)).toBe("fake-vmm");
  });
});

describe("plugin sources", () => {
  test("config.json, banger.config.ts, the plugins dir and --plugin all load, in that order", async () => {
    const other = tempHome("banger-plugsrc-");
    try {
      const mk = (name: string) => `export default { name: "${name}", setup(ctx) { ctx.hook("vm:create", () => {}); } };\n`;
      mkdirSync(join(other.home, "plugins"));
      writeFileSync(join(other.home, "p-json.ts"), mk("from-json"));
      writeFileSync(join(other.home, "config.json"), JSON.stringify({ plugins: ["./p-json.ts"] }));
      writeFileSync(join(other.home, "p-ts.ts"), mk("from-config-ts"));
      writeFileSync(join(other.home, "banger.config.ts"), `export default { plugins: ["./p-ts.ts"] };\n`);
      writeFileSync(join(other.home, "plugins", "dir.ts"), mk("from-dir"));
      writeFileSync(join(pluginDir, "flag.ts"), mk("from-flag"));
      const d = Bun.spawn([BANGER, "daemon", "--plugin", join(pluginDir, "flag.ts")], { env: other.env, stdout: "ignore", stderr: "ignore" });
      expect(await waitFor(() => other.run(["daemon", "status"]).code === 0, 10_000)).toBe(true);
      const names = other.run(["plugin", "list", "--json"]).json<{ name: string }[]>().map((p) => p.name);
      expect(names.slice(-4)).toEqual(["from-json", "from-config-ts", "from-dir", "from-flag"]);
      other.run(["daemon", "stop"]);
      await d.exited;
      // a broken plugin file stops the daemon with a message naming it
      writeFileSync(join(other.home, "plugins", "broken.ts"), "export default 42;\n");
      const r = other.run(["daemon"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("broken.ts");
      // auto-start gives up after a few quick retries (not the 15 s deadline) and names the cause
      const t0 = performance.now();
      const auto = other.run(["vm", "list", "--json"]);
      expect(auto.code).toBe(1);
      expect(auto.stderr).toContain("the daemon exited at start");
      expect(auto.stderr).toContain("broken.ts");
      expect(performance.now() - t0).toBeLessThan(10_000);
    } finally {
      await other.cleanup();
    }
  }, 30_000);
});

describe("bad input", () => {
  test("unknown vm: exit 1, one line", () => {
    const r = run(["vm", "show", "nope"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe("banger: vm not found: nope\n");
  });
  test("unknown vm with --json: the error envelope on stdout", () => {
    const r = run(["vm", "show", "nope", "--json"]);
    expect(r.code).toBe(1);
    expect(r.json()).toEqual({ error: { code: "E_VM_NOT_FOUND", message: "vm not found: nope" } });
  });
  test("invalid name: exit 2 and the rule", () => {
    const r = run(["vm", "create", "Bad_Name", "--driver", "fake"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("[a-z0-9][a-z0-9-]{0,62}");
  });
  test("unknown option and unknown command: exit 2", () => {
    expect(run(["vm", "list", "--bogus"]).code).toBe(2);
    const r = run(["vm", "frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n").filter(Boolean).length).toBe(1);
    // names an object inherits are no commands either (they once ran nothing and exited 0)
    for (const words of [["constructor"], ["vm", "toString"], ["vm", "__proto__"]]) {
      const u = run(words);
      expect(u.code).toBe(2);
      expect(u.stderr).toContain(`unknown command "${words.at(-1)}"`);
    }
  });
  test("a value option followed by a negative number: the option's range check speaks, not \"unknown option -1\"", () => {
    const r = run(["vm", "files", "box", "ls", "/", "--depth", "-1"]);
    expect([r.code, r.stderr]).toEqual([2, 'banger: --depth must be a whole number (0 or more), got "-1"\n']);
    expect(run(["vm", "create", "x1", "--cpus", "-2", "--driver", "fake"]).stderr).toContain("--cpus must be a whole number (1 or more)");
    // and 0, which would list nothing (it was taken for 1)
    expect(run(["vm", "files", "box", "ls", "/", "--depth", "0"]).stderr).toBe("banger: --depth must be at least 1 (the dir's own entries; `stat` is the path alone)\n");
  });
  test("vm run --workspace that is no git repo: exit 2 before a VM is made", () => {
    const r = run(["vm", "run", "--name", "wsbad", "--driver", "fake", "--workspace", "/nonexistent-banger-repo", "--", "true"]);
    expect([r.code, r.stderr]).toEqual([2, "banger: --workspace: /nonexistent-banger-repo is not a git repository\n"]);
    expect(run(["vm", "show", "wsbad"]).code).toBe(1);
  });
  test("a word more than a command takes: exit 2 naming it before anything is asked (vm delete a b deleted a and dropped b)", () => {
    const r = run(["vm", "delete", "extra1", "extra2"]);
    expect([r.code, r.stderr]).toEqual([2, 'banger: unexpected argument "extra2" for `banger vm delete` (it takes NAME; see `banger vm delete --help`)\n']);
    expect(run(["vm", "list", "x", "--json"]).json()).toEqual({ error: { code: "E_USAGE", message: 'unexpected argument "x" for `banger vm list` (it takes none; see `banger vm list --help`)' } });
  });
  test("unknown image: exit 1 naming the build command", () => {
    const r = run(["vm", "create", "x1", "--image", "nope", "--driver", "fake"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("image not found: nope");
  });
});

describe("handles and reconcile across kill -9", () => {
  test("create fake VMs, handles.json holds pid + start time, never SQLite", () => {
    expect(run(["image", "import", "--name", "tiny", "--kernel", kernel, "--rootfs", rootfs, "--json"]).code).toBe(0);
    for (const name of ["keep", "dead", "reused", "corrupt"]) {
      const r = run(["vm", "create", name, "--image", "tiny", "--driver", "fake", "--start", "--json"]);
      expect(r.code).toBe(0);
      const v = r.json<VMView>();
      expect(v.alive).toBe(true);
      vmPids.push(v.pid);
      const handles = JSON.parse(readFileSync(join(v.runtime.vmDir, "handles.json"), "utf8"));
      expect(handles.pid).toBe(v.pid);
      expect(handles.pidStartTime).toBeGreaterThan(0);
      expect(handles.tapDevice).toMatch(/^tap-/);
    }
    const dump = Bun.spawnSync(["bash", "-c", `cd ${ROOT} && ./node_modules/.bin/bun -e 'import {Database} from "bun:sqlite"; const d=new Database(process.argv[1],{readonly:true}); console.log(JSON.stringify(d.query("select * from vms").all()))' ${join(h.home, "banger.db")}`]);
    const rows = dump.stdout.toString();
    expect(rows).toContain('"name":"keep"');
    expect(rows).not.toContain("tap-");
    expect(rows).not.toContain(String(vmPids[0]));
  });

  test("daemon kill -9; one VM killed -9, one pid reused, one corrupt scratch file; reconcile sorts them out", async () => {
    const keep = vm("keep");
    const dead = vm("dead");
    const reused = vm("reused");
    const corrupt = vm("corrupt");
    const deadHandles = JSON.parse(readFileSync(join(dead.runtime.vmDir, "handles.json"), "utf8"));
    killAndWait(h.daemonPid());

    process.kill(dead.pid, "SIGKILL");
    // reused: the VM dies and its pid now names some unrelated live process (different start time)
    process.kill(reused.pid, "SIGKILL");
    const stranger = Bun.spawn(["sleep", "60"]);
    vmPids.push(stranger.pid);
    const rh = JSON.parse(readFileSync(join(reused.runtime.vmDir, "handles.json"), "utf8"));
    rh.pid = stranger.pid;
    writeFileSync(join(reused.runtime.vmDir, "handles.json"), JSON.stringify(rh));
    // corrupt: garbage scratch file, but the VM process is alive: live discovery wins
    writeFileSync(join(corrupt.runtime.vmDir, "handles.json"), "{not json");
    await waitFor(() => !alive(dead.pid) && !alive(reused.pid));

    const list = run(["vm", "list", "--json"]);
    expect(list.code).toBe(0);
    const by = Object.fromEntries(list.json<VMView[]>().map((v) => [v.name, v]));
    expect(by.keep!.runtime.state).toBe("running");
    expect(by.keep!.alive).toBe(true);
    expect(by.keep!.pid).toBe(keep.pid);
    expect(by.dead!.runtime.state).toBe("stopped");
    expect(by.reused!.runtime.state).toBe("stopped");
    expect(by.corrupt!.runtime.state).toBe("running");
    expect(by.corrupt!.pid).toBe(corrupt.pid);
    expect(JSON.parse(readFileSync(join(corrupt.runtime.vmDir, "handles.json"), "utf8")).pid).toBe(corrupt.pid);

    // the stranger holding the reused pid was never signalled
    expect(alive(stranger.pid)).toBe(true);
    stranger.kill();
    // cleanup ran with the scratch handles so kernel state (taps, loops) gets torn down
    const cleaned = readFileSync(join(h.home, "fake-cleanup.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const deadClean = cleaned.find((c) => c.vm === "dead");
    expect(deadClean.handles.tapDevice).toBe(deadHandles.tapDevice);
    expect(deadClean.handles.extra.fakeLoop).toBe(deadHandles.extra.fakeLoop);
    expect(cleaned.some((c) => c.vm === "reused")).toBe(true);
    expect(cleaned.some((c) => c.vm === "keep")).toBe(false);
    expect(existsSync(join(dead.runtime.vmDir, "handles.json"))).toBe(false);
    expect(existsSync(join(reused.runtime.vmDir, "handles.json"))).toBe(false);
    const logText = readFileSync(join(h.home, "daemon.log"), "utf8");
    expect(logText).toContain("reconcile dead: demoted (handles from scratch)");
    expect(logText).toContain("reconcile keep: kept (handles from process)");
  });

  test("a VM whose kernel panicked (its process ends by itself): lastError says so, from its console", async () => {
    const v = run(["vm", "create", "panics", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json<VMView>();
    vmPids.push(v.pid);
    writeFileSync((v.runtime as unknown as { logPath: string }).logPath, "[    1.97] VFS: Cannot open root device\n[    1.98] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\n[    1.99] CPU: 0 PID: 1\n");
    process.kill(v.pid, "SIGKILL");
    await waitFor(() => !alive(v.pid));
    const after = vm("panics");
    expect([after.runtime.state, after.runtime.lastError]).toEqual(["stopped", "the guest kernel panicked: VFS: Unable to mount root fs on unknown-block(0,0) (banger vm logs panics)"]);
    expect(run(["vm", "delete", "panics"]).code).toBe(0);
  });

  test("a VM that dies while the daemon runs is demoted and cleaned up at the next look", async () => {
    const v = run(["vm", "create", "crashes", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json<VMView>();
    vmPids.push(v.pid);
    process.kill(v.pid, "SIGKILL");
    await waitFor(() => !alive(v.pid));
    const after = vm("crashes");
    expect(after.runtime.state).toBe("stopped");
    expect(after.alive).toBe(false);
    expect(after.runtime.lastError).toBe("vm process exited");
    expect(existsSync(join(v.runtime.vmDir, "handles.json"))).toBe(false);
    expect(readFileSync(join(h.home, "fake-cleanup.log"), "utf8")).toContain('"vm":"crashes"');
    expect(run(["vm", "delete", "crashes"]).code).toBe(0);
  });

  test("a demoted VM starts again; delete leaves no process, dir or row", async () => {
    const r = run(["vm", "start", "dead", "--json"]);
    expect(r.code).toBe(0);
    const v = r.json<VMView>();
    vmPids.push(v.pid);
    expect(v.alive).toBe(true);
    for (const name of ["keep", "dead", "reused", "corrupt"]) {
      const before = vm(name);
      const d = run(["vm", "delete", name, "--json"]);
      expect(d.code).toBe(0);
      if (before.pid) expect(await waitFor(() => !alive(before.pid))).toBe(true);
      expect(existsSync(before.runtime.vmDir)).toBe(false);
    }
    expect(run(["vm", "list", "--json"]).json()).toEqual([]);
  });
});

describe("daemon lifecycle", () => {
  test("SIGTERM: running VMs are not touched; the next command starts a fresh daemon that keeps them", async () => {
    const v = run(["vm", "create", "survivor", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json<VMView>();
    vmPids.push(v.pid);
    const pid = h.daemonPid();
    process.kill(pid, "SIGTERM");
    expect(await waitFor(() => !alive(pid), 10_000)).toBe(true);
    expect(existsSync(join(h.home, "bangerd.sock"))).toBe(false);
    expect(alive(v.pid)).toBe(true);
    expect(run(["daemon", "status"]).code).toBe(1);
    const after = vm("survivor");
    expect(after.alive).toBe(true);
    expect(after.pid).toBe(v.pid);
    expect(run(["vm", "delete", "survivor"]).code).toBe(0);
  });

  test("SIGTERM finishes a request in flight, cuts endless streams after a grace period", async () => {
    expect(run(["vm", "list"]).code).toBe(0);
    const pid = h.daemonPid();
    const created = run(["vm", "create", "survivor2", "--image", "tiny", "--driver", "fake", "--start", "--json"]);
    vmPids.push(created.json().pid);
    const follower = Bun.spawn([BANGER, "vm", "logs", "survivor2", "-f"], { env: { ...h.env, BANGER_PLUGINS: PLUGIN }, stdout: "pipe", stderr: "pipe" });
    const slow = Bun.spawn([BANGER, "vm", "create", "slow-1", "--image", "tiny", "--driver", "fake", "--start", "--json"], { env: { ...h.env, BANGER_PLUGINS: PLUGIN }, stdout: "pipe", stderr: "pipe" });
    await Bun.sleep(500);
    const t0 = Date.now();
    process.kill(pid, "SIGTERM");
    expect(await slow.exited).toBe(0); // the in-flight create completed
    const v = JSON.parse(await new Response(slow.stdout).text());
    vmPids.push(v.pid);
    expect(v.alive).toBe(true);
    expect(await waitFor(() => !alive(pid), 15_000)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(12_000);
    expect(await follower.exited).not.toBe(null); // its stream was cut, so it ended
    expect(await new Response(follower.stdout).text()).toContain("BANGER-READY");
    expect(alive(v.pid)).toBe(true);
    for (const n of ["survivor2", "slow-1"]) expect(run(["vm", "delete", n]).code).toBe(0);
  }, 30_000);

  test("daemon stop says stopped once the daemon's process is gone, after the request in flight finished", async () => {
    expect(run(["vm", "list"]).code).toBe(0);
    const pid = h.daemonPid();
    const slow = Bun.spawn([BANGER, "vm", "create", "slow-2", "--image", "tiny", "--driver", "fake", "--json"], { env: { ...h.env, BANGER_PLUGINS: PLUGIN }, stdout: "pipe", stderr: "pipe" });
    await Bun.sleep(500);
    const stop = run(["daemon", "stop", "--json"]);
    expect(alive(pid)).toBe(false);
    expect([stop.code, stop.json()]).toEqual([0, { stopped: true, pid }]);
    expect(await slow.exited).toBe(0);
    expect(run(["vm", "delete", "slow-2"]).code).toBe(0);
  }, 30_000);

  test("version handshake: a daemon from another build is replaced", async () => {
    expect(run(["daemon", "stop"]).code).toBe(0);
    // a dev-build daemon (run from source) on the same home
    const dev = Bun.spawn([join(ROOT, "node_modules/.bin/bun"), join(ROOT, "src/cli/entry.ts"), "daemon"], {
      env: { ...h.env, BANGER_PLUGINS: PLUGIN },
      stdout: "ignore",
      stderr: "ignore",
    });
    vmPids.push(dev.pid);
    expect(await waitFor(() => run(["daemon", "status", "--json"]).code === 0 && h.daemonPid() === dev.pid, 10_000)).toBe(true);
    expect(run(["daemon", "status", "--json"]).json().version).toEndWith("+dev");
    // any real command from dist/banger replaces it; a create (not a read) shows the first
    // daemon refused it unread: done twice, the resend would fail with E_NAME_TAKEN
    const c = run(["vm", "create", "handshake-1", "--image", "tiny", "--driver", "fake", "--json"]);
    expect(c.stderr).toBe("");
    expect(c.code).toBe(0);
    expect(await waitFor(() => !alive(dev.pid), 5000)).toBe(true);
    const st = run(["daemon", "status", "--json"]).json();
    expect(st.version).not.toEndWith("+dev");
    expect(st.pid).not.toBe(dev.pid);
    expect(run(["vm", "list", "--json"]).json<VMView[]>().filter((v) => v.name === "handshake-1").length).toBe(1);
    expect(run(["vm", "delete", "handshake-1"]).code).toBe(0);
  });

  test("a daemon from before the handshake (answers without a version header) is replaced; a read is asked again", async () => {
    expect(run(["daemon", "stop"]).code).toBe(0);
    const script = join(pluginDir, "legacy-daemon.ts");
    writeFileSync(
      script,
      `const sock = process.argv[2]!;
const server = Bun.serve({ unix: sock, fetch(req) {
  const path = new URL(req.url).pathname;
  if (path === "/v1/health") return Response.json({ version: "0.0.1+legacy", pid: process.pid, home: "", startedAt: "", reconcile: [] });
  if (path === "/v1/shutdown") { setTimeout(() => { server.stop(true); process.exit(0); }, 10); return Response.json({ ok: true }); }
  return Response.json({ vms: [{ name: "from-legacy" }] });
} });
`,
    );
    const legacy = Bun.spawn([join(ROOT, "node_modules/.bin/bun"), script, join(h.home, "bangerd.sock")], { stdout: "ignore", stderr: "ignore" });
    vmPids.push(legacy.pid);
    expect(await waitFor(() => run(["daemon", "status", "--json"]).code === 0, 10_000)).toBe(true);
    expect(run(["daemon", "status", "--json"]).json().version).toBe("0.0.1+legacy");
    const r = run(["vm", "list", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).not.toContain("from-legacy");
    expect(await waitFor(() => !alive(legacy.pid), 5000)).toBe(true);
    expect(run(["daemon", "status", "--json"]).json().version).not.toBe("0.0.1+legacy");
  });

  test("a non-socket file at the socket path is never deleted: clear error", () => {
    expect(run(["daemon", "stop"]).code).toBe(0);
    const other = tempHome();
    try {
      writeFileSync(join(other.home, "bangerd.sock"), "precious");
      const r = other.run(["daemon"]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain("is not a socket");
      expect(readFileSync(join(other.home, "bangerd.sock"), "utf8")).toBe("precious");
    } finally {
      rmSync(other.home, { recursive: true, force: true });
    }
  });

  test("--verbose says the daemon was started, --quiet drops progress lines; --json output is the same", () => {
    expect(run(["daemon", "stop"]).code).toBe(0);
    const v = run(["vm", "list", "--json", "--verbose"]);
    expect(v.code).toBe(0);
    expect(v.stderr).toBe("starting daemon\n");
    expect(v.stdout).toBe(run(["vm", "list", "--json"]).stdout);
    for (const quiet of [false, true]) {
      const c = run(["vm", "create", "talk-1", "--image", "tiny", "--driver", "fake", "--start", ...(quiet ? ["--quiet"] : [])]);
      expect(c.code).toBe(0);
      vmPids.push(vm("talk-1").pid);
      expect(c.stdout).toBe("created talk-1 (running)\n");
      if (quiet) expect(c.stderr).toBe("");
      else expect(c.stderr).toMatch(/^(\[\d+\.\d+s\] .+\n)+$/);
      expect(run(["vm", "delete", "talk-1", "--force", "--quiet"]).code).toBe(0);
    }
  });
});
