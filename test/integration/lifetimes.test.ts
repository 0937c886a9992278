// VM lifetimes through dist/banger and its daemon: --ttl (delete), --ttl-action stop,
// `vm ttl` extension and removal, --idle-timeout kept off by exec and fired by idleness,
// and deadlines that hold across a daemon kill -9 (fired by the next daemon at start).
// "VMs" are fake-VMM processes; their "guest" is a real sshd on 127.0.0.1, so exec is real.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { alive, BANGER, FAKE_PLUGIN, killAndWait, tempHome, waitFor } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { guestLogin } from "../helpers/sshd.ts";

// TTL VMs need no guest: a plain fake-VMM home. Idleness needs exec: the one VM whose guest is the sshd.
const h = tempHome("banger-ttl-");
const run = (args: string[]) => h.run(args, { BANGER_PLUGINS: FAKE_PLUGIN });
const g = fakeGuestVM("banger-idle-", "t-idle");
const pids: number[] = [];

interface View {
  name: string;
  pid: number;
  alive: boolean;
  runtime: { state: string; vmDir: string };
  lifetime: { expiresAt: string; ttlAction: string; idleTimeoutMs: number; lastActiveAt: string; idleDeadline: string };
}
const show = (name: string) => run(["vm", "show", name, "--json"]);
const create = (name: string, ...extra: string[]): View => {
  const r = run(["vm", "create", name, "--image", "tiny", "--driver", "fake", "--start", "--json", ...extra]);
  if (r.code !== 0) throw new Error(`create ${name}: ${r.stderr}`);
  const v = r.json<View>();
  pids.push(v.pid);
  return v;
};
const daemonLog = () => readFileSync(join(h.home, "daemon.log"), "utf8");

beforeAll(async () => {
  await g.start();
  writeFileSync(join(h.home, "k"), "k");
  writeFileSync(join(h.home, "r"), Buffer.alloc(4096));
  const imported = run(["image", "import", "--name", "tiny", "--kernel", join(h.home, "k"), "--rootfs", join(h.home, "r")]);
  if (imported.code !== 0) throw new Error(imported.stderr);
});
afterAll(async () => {
  for (const name of ["t-del", "t-stop", "t-ext", "t-dur", "t-dur2"]) run(["vm", "delete", name, "--force"]);
  await g.cleanup();
  await h.cleanup(pids);
});

guestLogin.describe("lifetimes (fake VMM, real sshd as the guest)", () => {
  test("--ttl 2s: the daemon deletes the VM at the deadline by itself (no CLI call in between), through the normal delete", async () => {
    const before = Date.now();
    const v = create("t-del", "--ttl", "2s");
    const at = Date.parse(v.lifetime.expiresAt);
    expect(at).toBeGreaterThanOrEqual(before + 2000 - 50);
    expect(at).toBeLessThanOrEqual(Date.now() + 2000);
    expect(v.lifetime.ttlAction).toBe("delete");
    // no CLI call: watch the VM's process and its dir go
    expect(await waitFor(() => !alive(v.pid) && !existsSync(v.runtime.vmDir), 6000, 50)).toBe(true);
    expect(Date.now()).toBeGreaterThanOrEqual(at - 20);
    const r = show("t-del");
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe("banger: vm not found: t-del");
    expect(daemonLog()).toContain("lifetime: vm t-del: ttl expired at");
    expect(daemonLog()).toContain("lifetime: vm t-del deleted");
  });

  test("--ttl-action stop: stopped (not deleted) at the deadline, and the TTL is spent", async () => {
    const v = create("t-stop", "--ttl", "2s", "--ttl-action", "stop");
    expect(v.lifetime.ttlAction).toBe("stop");
    expect(await waitFor(() => !alive(v.pid), 6000, 50)).toBe(true);
    expect(await waitFor(() => show("t-stop").json<View>().runtime.state === "stopped", 3000)).toBe(true);
    const after = show("t-stop").json<View>();
    expect(after.lifetime.expiresAt).toBe("");
    expect(after.alive).toBe(false);
    // it starts again and stays up: nothing left to fire
    const started = run(["vm", "start", "t-stop", "--json"]).json<View>();
    pids.push(started.pid);
    await Bun.sleep(1500);
    expect(alive(started.pid)).toBe(true);
  });

  test("vm ttl extends from now, `none` removes it; show and list say when (human and --json)", async () => {
    const v = create("t-ext", "--ttl", "2s");
    const r = run(["vm", "ttl", "t-ext", "1h", "--json"]);
    expect(r.code).toBe(0);
    const extended = Date.parse(r.json<View>().lifetime.expiresAt);
    expect(extended - Date.now()).toBeGreaterThan(3_590_000);
    await Bun.sleep(2500);
    expect(alive(v.pid)).toBe(true);
    const human = run(["vm", "show", "t-ext"]).stdout;
    expect(human).toMatch(/expires: +\S+ \(in (59m\d+s|1h), then delete\)/);
    expect(run(["vm", "list"]).stdout).toMatch(/t-ext .* in (59m\d+s|1h) \(delete\)/);
    expect(run(["vm", "list", "--json"]).json<View[]>().find((x) => x.name === "t-ext")!.lifetime.expiresAt).toBe(new Date(extended).toISOString());
    expect(run(["vm", "ttl", "t-ext", "none", "--json"]).json<View>().lifetime.expiresAt).toBe("");
    expect(run(["vm", "ttl", "t-ext", "none"]).stdout.trim()).toBe("t-ext has no ttl and no idle timeout");
  });

  test("--idle-timeout 3s: exec keeps it up, then it is stopped after 3s without use", async () => {
    const set = g.run(["vm", "ttl", "t-idle", "--idle-timeout", "3s", "--json"]);
    expect(set.code).toBe(0);
    const v = set.json<View>();
    expect(v.lifetime.idleTimeoutMs).toBe(3000);
    expect(run(["vm", "show", "t-idle"]).code).toBe(1); // (the other home)
    expect(g.run(["vm", "show", "t-idle"]).stdout).toMatch(/idle: +stops after 3s without use; idle deadline \S+ \(in [0-3]s\)/);
    // 5 s of use, one exec a second: longer than the timeout, so only the activity keeps it up
    for (let i = 0; i < 5; i++) {
      expect(g.run(["vm", "exec", "t-idle", "--", "true"]).code).toBe(0);
      await Bun.sleep(1000);
    }
    expect(alive(v.pid)).toBe(true);
    const last = Date.now();
    expect(await waitFor(() => !alive(v.pid), 8000, 50)).toBe(true);
    expect(Date.now() - last).toBeGreaterThanOrEqual(1500); // 3 s after the last exec began, less its own ~1 s sleep
    expect(await waitFor(() => g.run(["vm", "show", "t-idle", "--json"]).json<View>().runtime.state === "stopped", 3000)).toBe(true);
    expect(readFileSync(join(g.h.home, "daemon.log"), "utf8")).toMatch(/lifetime: vm t-idle: idle since \S+ \(timeout 3s\): stopping it/);
  });

  test("an exec longer than the idle timeout is not cut: the VM counts as busy while it runs; a start restarts the idle clock", async () => {
    const v = g.run(["vm", "start", "t-idle", "--json"]).json<View>();
    pids.push(v.pid);
    expect(Date.parse(v.lifetime.lastActiveAt)).toBeGreaterThan(Date.now() - 3000);
    const r = g.run(["vm", "exec", "t-idle", "--", "sh", "-c", "sleep 5; echo done"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("done\n");
    expect(alive(v.pid)).toBe(true);
    expect(g.run(["vm", "ttl", "t-idle", "--idle-timeout", "none", "--json"]).json<View>().lifetime.idleTimeoutMs).toBe(0);
  });

  test("an interactive vm ssh holds the VM in use while its shell is open (its traffic goes straight to the guest); closing it or kill -9 of the CLI lets the idle timeout run", async () => {
    expect(g.run(["vm", "ttl", "t-idle", "--idle-timeout", "3s", "--json"]).code).toBe(0);
    const pid = () => g.run(["vm", "show", "t-idle", "--json"]).json<View>().pid;
    const shell = () => Bun.spawn([BANGER, "vm", "ssh", "t-idle"], { env: { ...g.h.env, ...g.env }, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    // a shell left silent for longer than the timeout: the VM stays up
    const a = shell();
    await Bun.sleep(5000);
    expect(alive(pid())).toBe(true);
    // show and list say why the deadline waits (not "in 0s")
    expect(g.run(["vm", "show", "t-idle", "--json"]).json<View & { requestsOpen: number }>().requestsOpen).toBe(1);
    expect(g.run(["vm", "show", "t-idle"]).stdout).toContain("stops after 3s without use; in use now (1 request open: the clock starts when it ends)");
    expect(g.run(["vm", "list"]).stdout).toMatch(/t-idle .* in use /);
    a.stdin.write("echo typed-$((6*7)); exit 7\n");
    await a.stdin.end();
    expect(await a.exited).toBe(7);
    expect(await new Response(a.stdout).text()).toContain("typed-42");
    const closed = Date.now();
    const first = pid();
    expect(await waitFor(() => !alive(first), 8000, 50)).toBe(true);
    expect(Date.now() - closed).toBeGreaterThanOrEqual(2500);
    // the CLI killed: its connection to the daemon closes, and with it the hold
    pids.push(g.run(["vm", "start", "t-idle", "--json"]).json<View>().pid);
    const b = shell();
    await Bun.sleep(4500);
    expect(alive(pid())).toBe(true);
    b.kill("SIGKILL");
    await b.exited;
    const second = pid();
    expect(await waitFor(() => !alive(second), 8000, 50)).toBe(true);
    pids.push(g.run(["vm", "start", "t-idle", "--json"]).json<View>().pid);
    expect(g.run(["vm", "ttl", "t-idle", "--idle-timeout", "none", "--json"]).code).toBe(0);
  }, 40000);

  test("vm run --ttl on an existing VM sets its TTL from now, then runs the command", () => {
    const r = g.run(["vm", "run", "--name", "t-idle", "--ttl", "1h", "--ttl-action", "stop", "--", "true"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const v = g.run(["vm", "show", "t-idle", "--json"]).json<View>();
    expect(Date.parse(v.lifetime.expiresAt) - Date.now()).toBeGreaterThan(3_590_000);
    expect(v.lifetime.ttlAction).toBe("stop");
  });

  test("vm run --name of an existing VM runs in it as it is: another shape or --from is refused (not ignored); --egress and --publish apply to it", () => {
    const spec = g.run(["vm", "show", "t-idle", "--json"]).json<{ spec: { memoryMiB: number; cpus: number } }>().spec;
    const refused: [string[], string][] = [
      [["--memory", "1G"], `banger: vm t-idle exists with ${spec.memoryMiB} MiB of memory, not 1024 MiB of memory (--memory); \`vm run --name\` runs in the VM it names as it is (\`banger vm delete t-idle\` first to make it anew)\n`],
      [["--cpus", String(spec.cpus + 1)], `banger: vm t-idle exists with ${spec.cpus} cpu, not ${spec.cpus + 1} cpu (--cpus); \`vm run --name\` runs in the VM it names as it is (\`banger vm delete t-idle\` first to make it anew)\n`],
      [["--from", "x@y"], "banger: vm t-idle exists: --from makes a new VM; `vm run --name` runs in the VM it names as it is (`banger vm delete t-idle` first to make it anew)\n"],
    ];
    for (const [flags, err] of refused) {
      const r = g.run(["vm", "run", "--name", "t-idle", ...flags, "--", "touch", "/tmp/ran-anyway"]);
      expect([flags.join(" "), r.code, r.stderr]).toEqual([flags.join(" "), 2, err]);
    }
    // the same shape given again is no change
    expect(g.run(["vm", "run", "--name", "t-idle", "--memory", `${spec.memoryMiB}M`, "--", "true"]).code).toBe(0);
    for (let i = 0; i < 2; i++) {
      const r = g.run(["vm", "run", "--name", "t-idle", "--egress", "all", "-p", "0:8080", "--", "true"]);
      expect([r.code, r.stderr]).toEqual([0, ""]);
    }
    const v = g.run(["vm", "show", "t-idle", "--json"]).json<{ spec: { egress: string; ports: { guestPort: number }[] } }>();
    expect(v.spec.egress).toBe("all");
    expect(v.spec.ports.map((p) => p.guestPort)).toEqual([8080]); // added once, not again by the second run
  });

  test("durable: a deadline passes while the daemon is dead (kill -9); the next daemon fires it at start", async () => {
    const v = create("t-dur", "--ttl", "3s");
    const s = create("t-dur2", "--ttl", "3s", "--ttl-action", "stop");
    killAndWait(h.daemonPid());
    await Bun.sleep(3500);
    // nobody was there to fire them
    expect(alive(v.pid)).toBe(true);
    expect(alive(s.pid)).toBe(true);
    // any command starts a daemon, which fires what is overdue
    expect(run(["vm", "list", "--json"]).code).toBe(0);
    expect(await waitFor(() => !alive(v.pid) && !alive(s.pid), 8000, 50)).toBe(true);
    expect(await waitFor(() => show("t-dur").code === 1 && show("t-dur2").json<View>().runtime.state === "stopped", 5000)).toBe(true);
  });

  test("bad input: a bad duration or action is exit 2, one line; an unknown VM exit 1", () => {
    const bad = run(["vm", "create", "t-bad", "--image", "tiny", "--driver", "fake", "--ttl", "5x"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('banger: --ttl must be a duration like 90s, 5m, 1h30m or 2d; got "5x"');
    const noTtl = run(["vm", "create", "t-bad", "--image", "tiny", "--driver", "fake", "--ttl-action", "stop"]);
    expect(noTtl.code).toBe(2);
    expect(noTtl.stderr.trim()).toBe("banger: --ttl-action needs --ttl");
    const action = run(["vm", "ttl", "base", "5m", "--ttl-action", "explode"]);
    expect(action.code).toBe(2);
    expect(run(["vm", "ttl", "base"]).code).toBe(2);
    const missing = run(["vm", "ttl", "nope", "5m"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe("banger: vm not found: nope");
    expect(show("t-bad").code).toBe(1);
  });
});
