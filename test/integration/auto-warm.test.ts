// Automatic warm-start templates through dist/banger and its daemon with the
// fake VMM (its "saved state" names the VM it came from, and a restored VM
// writes that into restored.log): made in the background after a first cold
// boot, used by the next start of that shape, never after --cold, off by
// config, listed by `image show`, removed with the image.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, FAKE_PLUGIN, killAndWait, tempHome } from "../helpers/cli.ts";

const h = tempHome("banger-aw-");
const env: Record<string, string> = { BANGER_PLUGINS: FAKE_PLUGIN, BANGER_AUTO_WARM: "1" };
const run = (args: string[]) => h.run(args, env);
const ok = (args: string[]) => {
  const r = run(args);
  if (r.code !== 0) throw new Error(`banger ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
};
const pids: number[] = [];
const scratch = join(h.home, "scratch");
const importTiny = () => ok(["image", "import", "--name", "tiny", "--kernel", join(scratch, "k"), "--rootfs", join(scratch, "r")]);
const created: string[] = [];
const boot = (name: string, ...extra: string[]) => {
  const v = ok(["vm", "create", name, "--image", "tiny", "--driver", "fake", "--start", ...extra, "--json"]).json();
  pids.push(v.pid);
  created.push(name);
  return { ...v, warm: existsSync(join(v.runtime.vmDir, "restored.log")) ? readFileSync(join(v.runtime.vmDir, "restored.log"), "utf8") : null };
};
const templates = () => ok(["image", "show", "tiny", "--json"]).json().templates as { snapshot: string; memoryMiB: number; stale: boolean; createdAt: string }[];
/**
 * Wait for the background template of `memoryMiB` (the fake VMM makes one in well under a second) and for its
 * builder VM to be gone: the snapshot is listed before the builder is deleted, and until then it uses the image.
 */
async function templateAt(memoryMiB: number, stale = false) {
  for (let i = 0; i < 150; i++) {
    const t = templates().find((x) => x.memoryMiB === memoryMiB && x.stale === stale);
    if (t && run(["vm", "show", `warm-tiny-1c-${memoryMiB}m`]).code === 1) return t;
    await Bun.sleep(100);
  }
  throw new Error(`no template at ${memoryMiB} MiB after 15 s; daemon log:\n${ok(["daemon", "logs"]).stdout.slice(-2000)}`);
}

beforeAll(() => {
  Bun.spawnSync(["mkdir", "-p", scratch]);
  writeFileSync(join(scratch, "k"), "k");
  writeFileSync(join(scratch, "r"), "disk\n");
  importTiny();
}, 30_000);

afterAll(async () => {
  for (const n of created) run(["vm", "delete", n, "--force"]);
  await h.cleanup(pids);
});

test("the first cold boot of a shape makes its template in the background; the next start of that shape is a clone of it", async () => {
  expect(templates()).toEqual([]);
  expect(ok(["image", "show", "tiny"]).stdout).toContain("warm-start templates: none");
  const first = boot("a1");
  expect(first.warm).toBeNull();
  const t = await templateAt(256);
  expect(t).toMatchObject({ snapshot: "warm-tiny-1c-256m@template", stale: false, cpus: 1, vmm: "fake" });
  expect(run(["vm", "show", "warm-tiny-1c-256m"]).code).toBe(1); // its VM is gone (templateAt waited for that), the snapshot stays
  expect(ok(["image", "show", "tiny"]).stdout).toMatch(/warm-tiny-1c-256m@template {2}fake \S+ \S+ 1 cpu 256 MiB/);
  expect(boot("a2").warm).toBe("state of warm-tiny-1c-256m\n");
  expect(ok(["daemon", "logs"]).stdout).toMatch(/auto-warm: template warm-tiny-1c-256m@template ready in \d+ ms/);
});

test("a warm start keeps what its request gives beside the shape: ttl, idle timeout and action, egress policy (not dropped for the template's)", () => {
  const v = boot("w1", "--ttl", "10m", "--idle-timeout", "5m", "--idle-action", "delete", "--egress", "all");
  expect(v.warm).toBe("state of warm-tiny-1c-256m\n");
  expect(v.lifetime).toMatchObject({ ttlAction: "delete", idleTimeoutMs: 300_000, idleAction: "delete" });
  expect(Date.parse(v.lifetime.expiresAt) - Date.now()).toBeGreaterThan(9 * 60_000);
  expect(v.spec.egress).toBe("all");
  // and one with none of them has none (and the default egress), not the previous clone's
  const plain = boot("w2");
  expect(plain.warm).toBe("state of warm-tiny-1c-256m\n");
  expect(plain.lifetime).toMatchObject({ expiresAt: "", idleTimeoutMs: 0, idleAction: "stop" });
  expect(plain.spec.egress).toBe("none");
  for (const n of ["w1", "w2"]) ok(["vm", "delete", n, "--force"]);
  created.splice(created.indexOf("w1"), 2);
});

test("--cold boots cold and queues no template; other shapes get their own", async () => {
  expect(boot("c1", "--memory", "512M", "--cold").warm).toBeNull();
  // templates are made one at a time in order: once the later 384 MiB one exists, a 512 MiB one would have too
  boot("c2", "--memory", "384M");
  await templateAt(384);
  expect(templates().map((x) => x.memoryMiB).sort()).toEqual([256, 384]);
  expect(boot("c3", "--memory", "512M").warm).toBeNull(); // still cold: the --cold boot made no template
});

test("image rm removes the image's templates (a cache of it: their disk comes back); after a re-import the first cold boot makes a new one", async () => {
  for (const n of created.splice(0)) ok(["vm", "delete", n, "--force"]);
  await templateAt(512); // c3's, queued before the removal
  const snapshots = () => (ok(["snapshot", "list", "--json"]).json() as { vmName: string }[]).map((x: { vmName: string }) => x.vmName) as string[];
  expect(snapshots().filter((n) => n.startsWith("warm-tiny-")).length).toBe(3);
  ok(["image", "rm", "tiny"]);
  expect(snapshots().filter((n) => n.startsWith("warm-tiny-"))).toEqual([]);
  expect(readdirSync(join(h.home, "snapshots")).filter((n) => n.startsWith("warm-tiny-"))).toEqual([]);
  expect(ok(["daemon", "logs"]).stdout).toContain("image tiny: warm-start templates warm-tiny-1c-");
  importTiny();
  expect(templates()).toEqual([]);
  expect(boot("s1").warm).toBeNull();
  await templateAt(256);
  expect(boot("s2").warm).toBe("state of warm-tiny-1c-256m\n");
});

test('config.json "autoWarm": false turns it off (BANGER_AUTO_WARM unset); a bad value stops the daemon with its reason', async () => {
  ok(["daemon", "stop"]);
  env.BANGER_AUTO_WARM = "";
  writeFileSync(join(h.home, "config.json"), JSON.stringify({ autoWarm: "no" }));
  const bad = run(["vm", "list"]);
  expect(bad.code).not.toBe(0);
  expect(ok(["daemon", "logs"]).stdout).toContain('config.json: "autoWarm" must be true or false');
  writeFileSync(join(h.home, "config.json"), JSON.stringify({ autoWarm: false }));
  expect(boot("o1", "--memory", "768M").warm).toBeNull();
  await Bun.sleep(1500); // the enabled runs above made theirs in well under this
  expect(templates().some((x) => x.memoryMiB === 768)).toBe(false);
});

test("a daemon killed right after a warm's snapshot is written leaves a whole template, not an ordinary snapshot (the mark is in its first write)", () => {
  killAndWait(h.daemonPid());
  const r = h.run(["image", "warm", "tiny", "--vmm", "fake", "--memory", "640M"], { ...env, BANGER_FAULT: "snapshot:after-commit" });
  expect(r.code).not.toBe(0);
  expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("SIGKILL at snapshot:after-commit");
  expect(templates().find((x) => x.memoryMiB === 640)).toMatchObject({ snapshot: "warm-tiny-1c-640m@template", stale: false });
  const snaps = ok(["snapshot", "list", "--json"]).json() as { vmName: string; template?: unknown }[];
  expect(snaps.filter((s) => s.vmName === "warm-tiny-1c-640m").every((s) => s.template)).toBe(true);
  expect(run(["vm", "show", "warm-tiny-1c-640m"]).code).toBe(1); // its builder VM: deleted by the next daemon
  expect(boot("m1", "--memory", "640M").warm).toBe("state of warm-tiny-1c-640m\n");
});

test("a daemon killed in the middle of a warm leaves its builder VM; the next daemon deletes it (no VM, no process left)", () => {
  const vmsDir = join(h.home, "vms");
  const before = new Set(readdirSync(vmsDir));
  killAndWait(h.daemonPid()); // the next call starts a daemon with the fault armed
  const r = h.run(["image", "warm", "tiny", "--vmm", "fake", "--memory", "768M"], { ...env, BANGER_FAULT: "snapshot:after-row" });
  expect(r.code).not.toBe(0);
  expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("SIGKILL at snapshot:after-row");
  // what the crash left: the builder VM running, and its mark
  const made = readdirSync(vmsDir).filter((d) => !before.has(d));
  expect(made.length).toBe(1);
  const builderPid = JSON.parse(readFileSync(join(vmsDir, made[0]!, "handles.json"), "utf8")).pid as number;
  expect(alive(builderPid)).toBe(true);
  expect(existsSync(join(h.home, "warm-builders", "warm-tiny-1c-768m"))).toBe(true);

  const list = ok(["vm", "list", "--json"]).json() as { name: string }[]; // a new daemon: reconcile
  expect(list.map((v) => v.name)).not.toContain("warm-tiny-1c-768m");
  expect(alive(builderPid)).toBe(false);
  expect(existsSync(join(vmsDir, made[0]!))).toBe(false);
  expect(existsSync(join(h.home, "warm-builders", "warm-tiny-1c-768m"))).toBe(false);
  expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("warm-tiny-1c-768m: deleted the warm-start builder VM a killed daemon left");
});
