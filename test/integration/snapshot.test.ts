// Snapshots through dist/banger and its daemon with the fake VMM (a node
// process that pauses, "saves its state" into the file it is given and
// records what it was restored from) and the real copy storage plugin.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BANGER, FAKE_PLUGIN, tempHome, waitFor } from "../helpers/cli.ts";

const h = tempHome("banger-snap-");
const env = { BANGER_PLUGINS: FAKE_PLUGIN };
const run = (args: string[]) => h.run(args, env);
const ok = (args: string[]) => {
  const r = run(args);
  if (r.code !== 0) throw new Error(`banger ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r;
};
const pids: number[] = [];

beforeAll(() => {
  const scratch = join(h.home, "scratch");
  Bun.spawnSync(["mkdir", "-p", scratch]);
  writeFileSync(join(scratch, "k"), "k");
  writeFileSync(join(scratch, "r"), "disk at create\n");
  ok(["image", "import", "--name", "tiny", "--kernel", join(scratch, "k"), "--rootfs", join(scratch, "r")]);
  for (const n of ["a", "b"]) pids.push(ok(["vm", "create", n, "--image", "tiny", "--driver", "fake", "--start", "--json"]).json().pid);
}, 30_000);

afterAll(async () => {
  // every VM, not just a and b: a test that failed midway may have left clones (their processes would outlive the home)
  const listed = run(["vm", "list", "--json"]);
  const names: string[] = listed.code === 0 ? listed.json().map((v: { name: string }) => v.name) : [];
  for (const n of new Set(["a", "b", ...names])) run(["vm", "delete", n, "--force", "--with-snapshots"]);
  await h.cleanup(pids);
});

const vm = (n: string) => ok(["vm", "show", n, "--json"]).json();
const disk = (n: string) => join(vm(n).runtime.vmDir, "system.img");

test("snapshot of a running VM: memory + disks, named VM@SNAP, listed and shown; the VM runs on (paused only for it)", () => {
  const s = ok(["vm", "snapshot", "a", "--name", "s1", "--json"]).json();
  expect(s).toMatchObject({ name: "s1", vmName: "a", memory: true, state: "ready", disks: ["system.img"] });
  expect(s.dir).toBe(join(h.home, "snapshots", s.id));
  expect(readFileSync(join(s.dir, "state.mig"), "utf8")).toBe("state of a");
  expect(readFileSync(join(s.dir, "system.img"), "utf8")).toBe("disk at create\n");
  expect(JSON.parse(readFileSync(join(s.dir, "snapshot.json"), "utf8"))).toMatchObject({ id: s.id, state: "ready" });
  expect(vm("a")).toMatchObject({ alive: true, runtime: { state: "running" } });
  expect(ok(["snapshot", "show", "a@s1", "--json"]).json().id).toBe(s.id);
  expect(ok(["snapshot", "list", "--vm", "a", "--json"]).json().map((x: { name: string }) => x.name)).toEqual(["s1"]);
  expect(ok(["snapshot", "list"]).stdout).toContain("a@s1");
  expect(ok(["snapshot", "list"]).stdout.split("\n")[0]).toMatch(/^SNAPSHOT +HOLDS +SIZE +CREATED$/);
  // a default name is a timestamp; repeatable on the same VM
  const d = ok(["vm", "snapshot", "a", "--json"]).json();
  expect(d.name).toMatch(/^\d{8}-\d{6}-\d{3}$/);
  ok(["snapshot", "rm", `a@${d.name}`]);
  expect(existsSync(d.dir)).toBe(false);
});

test("a paused VM is snapshotted as it is and stays paused; a stopped VM gives a disks-only snapshot", () => {
  ok(["vm", "pause", "b"]);
  expect(ok(["vm", "snapshot", "b", "--name", "p", "--json"]).json().memory).toBe(true);
  expect(vm("b").runtime.state).toBe("paused");
  ok(["vm", "resume", "b"]);
  ok(["vm", "stop", "b"]);
  const s = ok(["vm", "snapshot", "b", "--name", "cold", "--json"]).json();
  expect(s).toMatchObject({ memory: false, freezeMs: 0, disks: ["system.img"] });
  expect(existsSync(join(s.dir, "state.mig"))).toBe(false);
  ok(["vm", "start", "b"]);
});

test("rollback: disks put back and the VM restored from the saved state (same record, new process)", () => {
  writeFileSync(disk("a"), "written after s1\n");
  const before = vm("a").pid;
  const r = ok(["vm", "rollback", "a", "s1", "--json"]).json();
  expect(r).toMatchObject({ name: "a", alive: true, runtime: { state: "running" } });
  expect(r.pid).not.toBe(before);
  pids.push(r.pid);
  expect(readFileSync(disk("a"), "utf8")).toBe("disk at create\n");
  expect(readFileSync(join(r.runtime.vmDir, "restored.log"), "utf8")).toBe("state of a\n");
  // VM@SNAP works too; a disks-only snapshot of a running VM boots it afresh (no restore)
  ok(["vm", "rollback", "a", "a@s1"]);
  const cold = ok(["vm", "rollback", "b", "b@cold", "--json"]).json();
  expect(cold).toMatchObject({ alive: true, runtime: { state: "running" } });
  pids.push(cold.pid, vm("a").pid);
  expect(existsSync(join(cold.runtime.vmDir, "restored.log"))).toBe(false);
});

test("snapshot rm while a rollback to it or a clone of it restores is refused, naming what reads it; once that is done it goes", async () => {
  const sr = ok(["vm", "create", "slowrestore-r", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json();
  pids.push(sr.pid);
  ok(["vm", "snapshot", "slowrestore-r", "--name", "victim"]);
  for (const [what, args] of [
    ["vm rollback slowrestore-r", ["vm", "rollback", "slowrestore-r", "victim"]],
    ["vm create slowrestore-c --from slowrestore-r@victim", ["vm", "create", "slowrestore-c", "--from", "slowrestore-r@victim", "--start"]],
  ] as const) {
    const p = Bun.spawn([BANGER, ...args, "--json"], { env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    // the fake restore of slowrestore-* takes 1.5 s: the rm comes in the middle of it
    await Bun.sleep(700);
    const rm = run(["snapshot", "rm", "slowrestore-r@victim"]);
    expect([rm.code, rm.stderr]).toEqual([1, `banger: snapshot slowrestore-r@victim is in use by ${what}: remove it once that is done\n`]);
    expect(await p.exited).toBe(0);
    const back = JSON.parse(await new Response(p.stdout).text());
    pids.push(back.pid ?? back.vms?.[0]?.pid);
    expect(back).toMatchObject({ alive: true, runtime: { state: "running" } });
  }
  ok(["vm", "delete", "slowrestore-c", "--force"]);
  expect(ok(["snapshot", "rm", "slowrestore-r@victim"]).code).toBe(0);
  ok(["vm", "delete", "slowrestore-r", "--force"]);
});

test("the VM's process killed during its snapshot: one line saying so, no snapshot, the VM stopped and startable", async () => {
  const v = ok(["vm", "create", "slowsave-k", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json();
  const p = Bun.spawn([BANGER, "vm", "snapshot", "slowsave-k", "--name", "cut"], { env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
  await Bun.sleep(700);
  process.kill(v.pid, "SIGKILL");
  const said = (await new Response(p.stderr).text()).trim().split("\n");
  expect([await p.exited, said.at(-1)]).toEqual([1, "banger: vm slowsave-k: its process exited during the snapshot; no snapshot was made (start it again: `banger vm start slowsave-k`)"]);
  expect(said.filter((l) => l.startsWith("banger:"))).toHaveLength(1);
  expect(run(["snapshot", "show", "slowsave-k@cut"]).code).toBe(1);
  expect(vm("slowsave-k").runtime.state).toBe("stopped");
  pids.push(ok(["vm", "start", "slowsave-k", "--json"]).json().pid);
  ok(["vm", "delete", "slowsave-k", "--force"]);
});

test("bad input: one line each, exit 1 or 2, nothing made", () => {
  const cases: [string[], number, string][] = [
    [["vm", "snapshot", "nope"], 1, "banger: vm not found: nope\n"],
    [["vm", "snapshot", "a", "--name", "Bad_Name"], 2, 'banger: invalid snapshot name "Bad_Name": must match [a-z0-9][a-z0-9-]{0,62}\n'],
    [["vm", "snapshot", "a", "--name", "s1"], 1, "banger: snapshot already exists: a@s1\n"],
    [["vm", "rollback", "a", "nope"], 1, "banger: snapshot not found: a@nope\n"],
    [["vm", "rollback", "a", "b@p"], 2, "banger: snapshot b@p was made from another vm; make a new vm from it instead\n"],
    [["snapshot", "show", "s1"], 2, 'banger: a snapshot is named VM@SNAP, not "s1"\n'],
    [["snapshot", "rm", "a@$(x)"], 2, 'banger: invalid snapshot name "$(x)": must match [a-z0-9][a-z0-9-]{0,62}\n'],
    [["snapshot", "show", "../x@y"], 2, 'banger: invalid vm name "../x" in "../x@y": must match [a-z0-9][a-z0-9-]{0,62}\n'],
  ];
  const before = readdirSync(join(h.home, "snapshots")).sort();
  for (const [args, code, err] of cases) {
    const r = run(args);
    expect([args.join(" "), r.code, r.stderr]).toEqual([args.join(" "), code, err]);
  }
  const j = run(["vm", "snapshot", "nope", "--json"]);
  expect([j.code, j.json().error.code]).toEqual([1, "E_VM_NOT_FOUND"]);
  expect(readdirSync(join(h.home, "snapshots")).sort()).toEqual(before);
});

test("vm delete keeps the VM's snapshots (they are independent); --with-snapshots removes them", () => {
  pids.push(ok(["vm", "create", "c", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json().pid);
  ok(["vm", "snapshot", "c", "--name", "x"]);
  ok(["vm", "snapshot", "c", "--name", "y"]);
  expect(ok(["vm", "delete", "c", "--force", "--json"]).json().snapshots).toBeUndefined();
  const kept = ok(["snapshot", "show", "c@x", "--json"]).json();
  expect(existsSync(join(kept.dir, "system.img"))).toBe(true);
  // listed by the name they carry, though their VM is gone
  const names = (args: string[]) => ok(args).json().map((s: { vmName: string; name: string }) => `${s.vmName}@${s.name}`);
  expect(names(["snapshot", "list", "--vm", "c", "--json"])).toEqual(["c@x", "c@y"]);
  pids.push(ok(["vm", "create", "c", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json().pid);
  // the new c is another VM: the old c's snapshots are not its own to roll back to
  expect(run(["vm", "rollback", "c", "x"]).code).toBe(2);
  const clash = run(["vm", "snapshot", "c", "--name", "x"]);
  expect([clash.code, clash.stderr]).toEqual([1, "banger: snapshot already exists: c@x (of an earlier VM named c: `banger snapshot rm c@x` frees the name)\n"]);
  ok(["vm", "snapshot", "c", "--name", "z"]);
  expect(names(["snapshot", "list", "--vm", "c", "--json"])).toEqual(["c@x", "c@y", "c@z"]);
  expect(ok(["vm", "delete", "c", "--force", "--with-snapshots", "--json"]).json().snapshots).toEqual(["z"]);
  expect(ok(["snapshot", "list", "--json"]).json().map((s: { vmName: string; name: string }) => `${s.vmName}@${s.name}`).filter((n: string) => n.startsWith("c@"))).toEqual(["c@x", "c@y"]);
  ok(["snapshot", "rm", "c@x"]);
  ok(["snapshot", "rm", "c@y"]);
});

test("vm create --from: a new VM from a snapshot (its disks, its shape), started from its memory", () => {
  const r = ok(["vm", "create", "k1", "--from", "a@s1", "--start", "--json"]).json();
  pids.push(r.pid);
  expect(r).toMatchObject({ name: "k1", alive: true, runtime: { state: "running" }, spec: { image: "tiny", driver: "fake", storage: "copy" } });
  expect(r.id).not.toBe(vm("a").id);
  expect(readFileSync(join(r.runtime.vmDir, "system.img"), "utf8")).toBe("disk at create\n");
  expect(readFileSync(join(r.runtime.vmDir, "restored.log"), "utf8")).toBe("state of a\n");
  // not started: made, with the snapshot's disks, and startable later
  const cold = ok(["vm", "create", "k2", "--from", "b@cold", "--json"]).json();
  expect(cold.runtime.state).toBe("created");
  const bad: [string[], number, string][] = [
    [["vm", "create", "k3", "--from", "a@s1", "--cpus", "2"], 2, "banger: a clone takes its snapshot's shape: --from goes without --image, --cpus, --memory, --disk, --work-disk, --vmm, --net, --storage\n"],
    [["vm", "create", "k3", "--from", "a@nope"], 1, "banger: snapshot not found: a@nope\n"],
    [["vm", "create", "k1", "--from", "a@s1"], 1, "banger: vm name already taken: k1\n"],
    [["vm", "fork", "a"], 2, "banger: name the clones (banger vm fork VM NEW…) or give --count N\n"],
    [["vm", "fork", "a", "x1", "x1"], 2, "banger: fork: the new names must differ\n"],
    [["vm", "fork", "nope", "x1"], 1, "banger: vm not found: nope\n"],
  ];
  for (const [args, code, err] of bad) {
    const x = run(args);
    expect([args.join(" "), x.code, x.stderr]).toEqual([args.join(" "), code, err]);
  }
  expect(run(["vm", "show", "k3"]).code).toBe(1);
  // more clones than the host's available memory could hold: refused before a snapshot or a clone is made
  const huge = run(["vm", "fork", "a", "--count", "5000"]);
  expect([huge.code, huge.stderr]).toEqual([2, expect.stringMatching(/^banger: fork of 5000 clones of \d+ MiB could need \d+ MiB of RAM; the host has \d+ MiB available: fork at most \d+ at a time\n$/)]);
  expect(run(["vm", "show", "a-1"]).code).toBe(1);
  ok(["vm", "delete", "k1", "--force"]);
  ok(["vm", "delete", "k2", "--force"]);
});

test("a clone keeps its source's egress policy unless it is given its own (a fork of a fenced-in VM must not get the default); it takes its own ttl and idle timeout", () => {
  const src = ok(["vm", "create", "eg", "--image", "tiny", "--driver", "fake", "--egress", "pkgs.example.test", "--start", "--json"]).json();
  pids.push(src.pid);
  const f = ok(["vm", "fork", "eg", "eg1", "--json"]).json();
  pids.push(f.vms[0].pid);
  expect(f.vms[0].spec.egress).toBe("pkgs.example.test");
  const given = ok(["vm", "create", "eg2", "--from", `eg@${f.snapshot.name}`, "--egress", "all", "--ttl", "1h", "--idle-timeout", "30m", "--idle-action", "delete", "--start", "--json"]).json();
  pids.push(given.pid);
  expect(given.spec.egress).toBe("all");
  expect(given.lifetime).toMatchObject({ ttlAction: "delete", idleTimeoutMs: 1_800_000, idleAction: "delete" });
  expect(given.lifetime.expiresAt).not.toBe("");
  expect(ok(["vm", "create", "eg3", "--from", `eg@${f.snapshot.name}`, "--json"]).json().spec.egress).toBe("pkgs.example.test");
  for (const n of ["eg", "eg1", "eg2", "eg3"]) ok(["vm", "delete", n, "--force", "--with-snapshots"]);
});

test("vm fork: snapshot + clones in one step, the source runs on; --count N names them VM-1…VM-N", () => {
  const f = ok(["vm", "fork", "a", "--count", "2", "--json"]).json();
  expect(f.snapshot).toMatchObject({ vmName: "a", memory: true });
  expect(f.snapshot.name).toMatch(/^fork-/);
  expect(f.vms.map((v: { name: string; alive: boolean }) => [v.name, v.alive])).toEqual([["a-1", true], ["a-2", true]]);
  pids.push(...f.vms.map((v: { pid: number }) => v.pid));
  expect(vm("a")).toMatchObject({ alive: true, runtime: { state: "running" } });
  const named = ok(["vm", "fork", "a", "z9", "--json"]).json();
  expect(named.vms.map((v: { name: string }) => v.name)).toEqual(["z9"]);
  pids.push(named.vms[0].pid);
  for (const n of ["a-1", "a-2", "z9"]) ok(["vm", "delete", n, "--force"]);
  for (const s of [f.snapshot, named.snapshot]) ok(["snapshot", "rm", `a@${s.name}`]);
});

test("a fork that makes no clone leaves no snapshot; one that made some keeps them and theirs; Ctrl-C on the CLI mid-fork leaves no clone and no snapshot", async () => {
  const forks = () => ok(["snapshot", "list", "--vm", "a", "--json"]).json().filter((s: { name: string }) => s.name.startsWith("fork-")).length;
  const before = forks();
  const none = run(["vm", "fork", "a", "unrestorable-1"]);
  expect(none.code).toBe(1);
  expect(none.stderr).toContain("this one cannot be restored");
  expect(forks()).toBe(before);
  expect(run(["vm", "show", "unrestorable-1"]).code).toBe(1);
  const some = run(["vm", "fork", "a", "kept1", "unrestorable-2"]);
  expect(some.code).toBe(1);
  expect(vm("kept1").alive).toBe(true);
  expect(forks()).toBe(before + 1);
  pids.push(vm("kept1").pid);
  ok(["vm", "delete", "kept1", "--force"]);
  // slow-* clones take 1.5 s to create: the CLI is interrupted while they are made
  const cli = Bun.spawn([BANGER, "vm", "fork", "a", "slow-1", "slow-2"], { env: { ...h.env, ...env }, stdout: "ignore", stderr: "pipe" });
  await Bun.sleep(700);
  cli.kill("SIGINT");
  expect(await cli.exited).toBe(130);
  const log = join(h.home, "daemon.log");
  expect(await waitFor(() => readFileSync(log, "utf8").includes("fork cancelled: its snapshot a@fork-"), 10_000, 100)).toBe(true);
  expect(forks()).toBe(before + 1);
  expect(ok(["vm", "list", "--json"]).json().map((v: { name: string }) => v.name).sort()).toEqual(["a", "b"]);
}, 30_000);

test("image warm: a template of the image at a shape; matching starts clone it, --cold or another shape boot, a removed image takes it along", () => {
  const t = ok(["image", "warm", "tiny", "--vmm", "fake", "--json"]).json();
  expect(t).toMatchObject({ vmName: "warm-tiny-1c-256m", name: "template", memory: true, template: { imageCreatedAt: expect.any(String) } });
  expect(run(["vm", "show", "warm-tiny-1c-256m"]).code).toBe(1); // the template VM itself is gone; its snapshot stays
  const warmVm = ok(["vm", "create", "w1", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json();
  pids.push(warmVm.pid);
  expect(readFileSync(join(warmVm.runtime.vmDir, "restored.log"), "utf8")).toBe("state of warm-tiny-1c-256m\n");
  const cold = ok(["vm", "create", "w2", "--image", "tiny", "--driver", "fake", "--start", "--cold", "--json"]).json();
  const other = ok(["vm", "create", "w3", "--image", "tiny", "--driver", "fake", "--memory", "512M", "--start", "--json"]).json();
  pids.push(cold.pid, other.pid);
  for (const v of [cold, other]) expect(existsSync(join(v.runtime.vmDir, "restored.log"))).toBe(false);
  // a rebuilt image (here: removed and imported again) invalidates the template
  for (const n of ["w1", "w2", "w3", "a", "b"]) ok(["vm", "delete", n, "--force"]);
  const scratch = join(h.home, "scratch");
  ok(["image", "rm", "tiny", "--force"]); // a@s1 and others need it: they wait for the image imported again below
  ok(["image", "import", "--name", "tiny", "--kernel", join(scratch, "k"), "--rootfs", join(scratch, "r")]);
  const after = ok(["vm", "create", "w4", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json();
  pids.push(after.pid);
  expect(existsSync(join(after.runtime.vmDir, "restored.log"))).toBe(false);
  ok(["vm", "delete", "w4", "--force"]);
  expect(run(["snapshot", "show", "warm-tiny-1c-256m@template"]).code).toBe(1);
});

test("a driver that saves live (liveSave, as QEMU's): it stops the VM itself, the disks are copied with it stopped, and its finish runs after the VM runs again; files beside the state are the snapshot's", async () => {
  const l = tempHome("banger-snap-live-");
  const lenv = { BANGER_PLUGINS: FAKE_PLUGIN, FAKE_VMM_LIVE_SAVE: "1" };
  const lok = (args: string[]) => {
    const r = l.run(args, lenv);
    if (r.code !== 0) throw new Error(`banger ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r;
  };
  const lpids: number[] = [];
  try {
    const scratch = join(l.home, "scratch");
    Bun.spawnSync(["mkdir", "-p", scratch]);
    writeFileSync(join(scratch, "k"), "k");
    writeFileSync(join(scratch, "r"), "disk\n");
    lok(["image", "import", "--name", "tiny", "--kernel", join(scratch, "k"), "--rootfs", join(scratch, "r")]);
    lpids.push(lok(["vm", "create", "l", "--image", "tiny", "--driver", "fake", "--start", "--json"]).json().pid);
    const s = lok(["vm", "snapshot", "l", "--name", "s", "--json"]).json();
    expect(s).toMatchObject({ memory: true, state: "ready", disks: ["system.img"] });
    expect(readFileSync(join(s.dir, "state.mig"), "utf8")).toBe("state of l, finished with the vm running");
    expect(readFileSync(join(s.dir, "memory.ram"), "utf8")).toBe("ram of l");
    // the size counts every file the snapshot holds
    expect(s.sizeBytes).toBe(["state of l, finished with the vm running", "ram of l", "disk\n"].reduce((n, x) => n + x.length, 0));
    expect(s.freezeMs).toBeGreaterThanOrEqual(1);
    expect(lok(["vm", "show", "l", "--json"]).json().runtime.state).toBe("running");
    // a clone starts from the finished state
    const m = lok(["vm", "create", "m", "--from", "l@s", "--start", "--json"]).json();
    lpids.push(m.pid);
    expect(readFileSync(join(m.runtime.vmDir, "restored.log"), "utf8")).toBe("state of l, finished with the vm running\n");
    lok(["snapshot", "rm", "l@s"]);
    expect(existsSync(s.dir)).toBe(false);
  } finally {
    for (const n of ["m", "l"]) l.run(["vm", "delete", n, "--force", "--with-snapshots"], lenv);
    await l.cleanup(lpids);
  }
}, 60_000);

test("image rm is refused while a snapshot needs the image (a restore boots its kernel and initrd), naming it; once it is gone the image goes", () => {
  const scratch = join(h.home, "scratch");
  const imported = run(["image", "import", "--name", "tiny2", "--kernel", join(scratch, "k"), "--rootfs", join(scratch, "r")]);
  // no initrd: said once, as a warning (its VMs boot, but banger's keys and agents come through its initramfs)
  expect([imported.code, imported.stdout, imported.stderr]).toEqual([0, "imported image tiny2\n", "banger: image tiny2 has no initrd: its VMs get no SSH keys or agents from banger, so vm exec, ssh and sessions cannot reach them (import with --initrd, as `banger image build` makes one)\n"]);
  // with --json: in the answer, stderr left alone
  ok(["image", "rm", "tiny2"]);
  const asJson = run(["image", "import", "--name", "tiny2", "--kernel", join(scratch, "k"), "--rootfs", join(scratch, "r"), "--json"]);
  expect([asJson.code, asJson.stderr, asJson.json().warning]).toEqual([0, "", expect.stringMatching(/^image tiny2 has no initrd: /)]);
  ok(["vm", "create", "i1", "--image", "tiny2", "--driver", "fake"]);
  ok(["vm", "snapshot", "i1", "--name", "keep"]);
  ok(["vm", "delete", "i1"]);
  const refused = run(["image", "rm", "tiny2"]);
  expect([refused.code, refused.stderr]).toEqual([1, "banger: image tiny2 is used by snapshot(s): i1@keep (remove them first, or image rm --force: they then wait for an image of that name)\n"]);
  expect(ok(["image", "list", "--json"]).json().map((i: { name: string }) => i.name)).toContain("tiny2");
  ok(["snapshot", "rm", "i1@keep"]);
  expect(ok(["image", "rm", "tiny2"]).stdout).toBe("removed image tiny2\n");
});
