// VM lifetimes on a real QEMU guest: a `--ttl 20s` VM is deleted when it expires, by the
// daemon alone (no CLI call at the deadline), and also when the daemon was kill -9'd
// meanwhile: the next daemon fires the overdue deadline at start. One boot per test.
// 20 s: a TCG boot here takes 8-15 s, and the deadline must fall after the VM is up.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { alive, killAndWait, waitFor } from "../helpers/cli.ts";
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
    for (const n of ["ttl-a", "ttl-b"]) h.run(["vm", "delete", n, "--force"]);
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
});
