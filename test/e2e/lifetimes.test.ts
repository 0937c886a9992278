// VM lifetimes on a real QEMU guest: a `--ttl 20s` VM is deleted when it expires, by the
// daemon alone (no CLI call at the deadline), and also when the daemon was kill -9'd
// meanwhile: the next daemon fires the overdue deadline at start. `vm run --rm` leaves no VM when
// its CLI is interrupted (SIGINT) or killed (its lease: an idle timeout that deletes). One boot per test.
// 20 s: a TCG boot here takes 8-15 s, and the deadline must fall after the VM is up.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BANGER, killAndWait, waitFor } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

const BOOT = 300_000;
const TTL_MS = 20_000;

interface View {
  pid: number;
  alive: boolean;
  runtime: { state: string; vmDir: string };
  lifetime: { expiresAt: string };
}

e2e.describe("lifetimes on a real VM (QEMU)", () => {
  const h = e2eReady ? e2eHome("banger-e2e-ttl-") : (null as never);
  afterAll(async () => {
    if (!h) return;
    for (const n of ["ttl-a", "ttl-b", "rm-int", "rm-kill"]) h.run(["vm", "delete", n, "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });

  /** Boot a VM with a 20 s TTL; returns it and its deadline. */
  const boot = (name: string, ttl = "20s", ttlMs = TTL_MS) => {
    const before = Date.now();
    const r = h.run(["vm", "create", name, "--vmm", "qemu", "--start", "--ttl", ttl, "--json"]);
    expect(r.code).toBe(0);
    const vm = r.json<View>();
    // counted from the create, not from the end of the boot
    const at = Date.parse(vm.lifetime.expiresAt);
    expect(at).toBeGreaterThanOrEqual(before + ttlMs - 50);
    expect(at).toBeLessThanOrEqual(before + ttlMs + 5000);
    return { vm, at };
  };

  test("--ttl 20s: the VM runs until its deadline and is gone after it, with no CLI call at the deadline", async () => {
    const { vm, at } = boot("ttl-a");
    // a loaded host can take most of the 20 s to boot: only check it runs with time to spare (an exec is ~0.2-1 s)
    if (Date.now() < at - 5000) {
      // booted before its deadline: it runs and answers until then
      expect(vm.alive).toBe(true);
      expect(h.run(["vm", "exec", "ttl-a", "--", "true"]).code).toBe(0);
      expect(alive(vm.pid)).toBe(true);
    }
    expect(await waitFor(() => !alive(vm.pid) && !existsSync(vm.runtime.vmDir), at - Date.now() + 30_000, 200)).toBe(true);
    expect(Date.now()).toBeGreaterThanOrEqual(at - 50);
    expect(h.run(["vm", "show", "ttl-a"]).stderr.trim()).toBe("banger: vm not found: ttl-a");
    expect(qemuPidsUnder(h.home)).toEqual([]);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("lifetime: vm ttl-a deleted");
  }, BOOT);

  test("the daemon is kill -9'd before the deadline: the VM outlives it, and the next daemon deletes it at start", async () => {
    // a TCG boot on a loaded host can take over 20 s: boot with room, then 10 s from now (vm ttl), so the kill surely comes first
    const { vm } = boot("ttl-b", "2m", 120_000);
    const set = h.run(["vm", "ttl", "ttl-b", "10s", "--json"]);
    expect(set.code).toBe(0);
    const at = Date.parse(set.json<View>().lifetime.expiresAt);
    killAndWait(h.daemonPid());
    expect(alive(vm.pid)).toBe(true);
    await Bun.sleep(Math.max(0, at - Date.now()) + 1000);
    expect(alive(vm.pid)).toBe(true); // no daemon, nothing fired
    expect(h.run(["plugin", "list", "--json"]).code).toBe(0); // starts a new daemon, and names no VM
    expect(await waitFor(() => !alive(vm.pid) && !existsSync(vm.runtime.vmDir), 30_000, 200)).toBe(true);
    expect(h.run(["vm", "list", "--json"]).json()).toEqual([]);
    expect(qemuPidsUnder(h.home)).toEqual([]);
  }, BOOT);

  /** `vm run --name NAME --rm -- sleep 120` in the background; resolves once NAME's command runs in it. */
  const runRm = async (name: string, env: Record<string, string> = {}) => {
    const p = Bun.spawn([BANGER, "vm", "run", "--name", name, "--rm", "--", "sh", "-c", "touch /tmp/started; sleep 120"], { env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    const started = () => h.run(["vm", "exec", name, "--", "test", "-e", "/tmp/started"]).code === 0;
    expect(await waitFor(started, BOOT - 30_000, 250)).toBe(true);
    const vm = h.run(["vm", "show", name, "--json"]).json<View & { lifetime: { idleTimeoutMs: number; idleAction: string } }>();
    return { p, vm };
  };

  test("vm run --rm and SIGINT (Ctrl-C): the command's VM is deleted before the CLI exits 130", async () => {
    const { p, vm } = await runRm("rm-int");
    expect(vm.lifetime).toMatchObject({ idleTimeoutMs: 30_000, idleAction: "delete" }); // its lease (BANGER_RUN_RM_LEASE unset)
    p.kill("SIGINT");
    expect(await p.exited).toBe(130);
    // gone by the time the CLI is: no wait, no lease
    expect(alive(vm.pid)).toBe(false);
    expect(h.run(["vm", "show", "rm-int"]).stderr.trim()).toBe("banger: vm not found: rm-int");
    expect(qemuPidsUnder(h.home)).toEqual([]);
  }, BOOT);

  test("vm run --rm whose CLI is kill -9'd mid-command: the daemon deletes the VM once its lease runs out", async () => {
    const { p, vm } = await runRm("rm-kill", { BANGER_RUN_RM_LEASE: "3" });
    expect(vm.lifetime).toMatchObject({ idleTimeoutMs: 3000, idleAction: "delete" });
    p.kill("SIGKILL");
    await p.exited;
    expect(alive(vm.pid)).toBe(true); // nothing of the CLI's doing
    expect(await waitFor(() => !alive(vm.pid) && !existsSync(vm.runtime.vmDir), 30_000, 200)).toBe(true);
    expect(h.run(["vm", "show", "rm-kill"]).stderr.trim()).toBe("banger: vm not found: rm-kill");
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toMatch(/lifetime: vm rm-kill: idle since .* \(timeout 3s\): deleting it/);
    expect(qemuPidsUnder(h.home)).toEqual([]);
  }, BOOT);
});
