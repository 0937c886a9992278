import { describe, expect, test } from "bun:test";
import { basename } from "node:path";
import { parseTempName, tempName, tempPathFor } from "../../src/shared/temps.ts";
import { sweepHome, type SweepDeps } from "../../src/daemon/sweep.ts";
import { fakeClock, fakeFS, fakeProcs, testLogger } from "../helpers/fakes.ts";

const H = "/h";
const paths = { home: H, imagesDir: `${H}/images`, vmsDir: `${H}/vms` };

function world(files: Record<string, string>, o: { vms?: string[]; images?: string[] } = {}) {
  const fs = fakeFS(files);
  const procs = fakeProcs();
  const log = testLogger();
  const deps: SweepDeps = {
    paths,
    fs,
    procs,
    clock: fakeClock(),
    log,
    vms: (o.vms ?? []).map((id) => ({ id, runtime: { vmDir: `${H}/vms/${id}` } })),
    images: (o.images ?? []).map((n) => ({ dir: `${H}/images/${n}` })),
    selfPid: 4242,
  };
  return { fs, procs, log, deps, left: () => [...fs.files.keys()].sort() };
}

describe("temp names", () => {
  test("one helper names them and parses them back, with the maker's pid", () => {
    const t = tempPathFor("/h/vms/a/handles.json", "tmp", 77);
    expect(t.startsWith("/h/vms/a/.handles.json.tmp-77-")).toBe(true);
    expect(parseTempName(basename(t))).toEqual({ kind: "tmp", target: "handles.json", pid: 77 });
    expect(parseTempName(tempName("default", "build", 5))).toMatchObject({ kind: "build", target: "default", pid: 5 });
    expect(parseTempName(tempName("x", "import", 6))).toMatchObject({ kind: "import", target: "x", pid: 6 });
    expect(tempName("a", "tmp", 1)).not.toBe(tempName("a", "tmp", 1));
  });
  test("names older versions made are recognised; ordinary files are not", () => {
    expect(parseTempName(".handles.json.0123456789ab.tmp")).toMatchObject({ kind: "legacy", target: "handles.json", pid: 0 });
    expect(parseTempName("initrd.img.tmp-99")).toMatchObject({ kind: "legacy", target: "initrd.img", pid: 99 });
    expect(parseTempName("initrd.img.tmp")).toMatchObject({ kind: "legacy", target: "initrd.img" });
    for (const n of ["handles.json", "rootfs.ext4", ".git", "default", "banger.db-wal", "x.tmp", ".a.tmp-1-"]) expect(parseTempName(n)).toBeNull();
  });
});

describe("startup sweep", () => {
  test("removes atomic-write temps wherever banger writes, and nothing else", async () => {
    const tmp = (dir: string, target: string) => `${dir}/${tempName(target, "tmp", 901)}`;
    const temps = [
      tmp(H, "config.json"),
      tmp(`${H}/images/default`, "manifest.json"),
      tmp(`${H}/vms/a`, "handles.json"),
      tmp(`${H}/vms/a/keys`, "host_ed25519.pub"),
      tmp(`${H}/vms/a/workspaces`, "0123456789abcdef.json"),
      `${H}/vms/a/.qemu.log.0123456789ab.tmp`,
      `${H}/vms/a/initrd.img.tmp`,
    ];
    const keep = [`${H}/banger.db`, `${H}/daemon.log`, `${H}/images/default/rootfs.ext4`, `${H}/vms/a/handles.json`, `${H}/vms/a/keys/id_ed25519`, `${H}/vms/a/workspaces/0123456789abcdef.json`];
    const w = world(Object.fromEntries([...temps, ...keep].map((p) => [p, "x"])), { vms: ["a"], images: ["default"] });
    const items = await sweepHome(w.deps);
    expect(items.map((i) => i.path).sort()).toEqual([...temps].sort());
    expect(items.every((i) => !i.kept)).toBe(true);
    expect(w.left()).toEqual([...keep].sort());
    expect(w.fs.ops.sort()).toEqual(temps.map((t) => `rmrf ${t}`).sort());
    // one log line per removal, saying what it was
    expect(w.log.of("info").length).toBe(temps.length);
    expect(w.log.of("info").find((l) => l.includes(".handles.json.tmp-901-"))).toMatch(/^sweep: removed \/h\/vms\/a\/\.handles\.json\.tmp-901-\S+ \(temp file of handles\.json of pid 901, gone\)$/);
  });

  test("an image build/import dir goes once its daemon is gone; one whose maker still runs stays", async () => {
    const dead = `${H}/images/${tempName("default", "build", 901)}`;
    const deadImport = `${H}/images/${tempName("mine", "import", 902)}`;
    const live = `${H}/images/${tempName("other", "build", 903)}`;
    const w = world({ [`${dead}/.build/rootfs/etc/passwd`]: "x", [`${deadImport}/rootfs.ext4`]: "x", [`${live}/vmlinuz`]: "x" });
    w.procs.add(903, 1, ["/usr/bin/banger", "daemon"]);
    const items = await sweepHome(w.deps);
    expect(w.fs.ops.sort()).toEqual([`rmrf ${dead}`, `rmrf ${deadImport}`].sort());
    expect(w.left()).toEqual([`${live}/vmlinuz`]);
    expect(items.find((i) => i.path === live)?.kept).toBe("its maker, pid 903, still runs");
    expect(w.log.of("warn")).toEqual([expect.stringContaining(`sweep: left ${live} (image build dir): its maker, pid 903, still runs`)]);
    expect(w.procs.kills).toEqual([]);
  });

  test("a temp named with our own pid is a leftover of an earlier process that had it", async () => {
    const t = `${H}/vms/a/${tempName("handles.json", "tmp", 4242)}`;
    const w = world({ [t]: "x" }, { vms: ["a"] });
    w.procs.add(4242, 1, ["banger", "daemon"]);
    await sweepHome(w.deps);
    expect(w.fs.ops).toEqual([`rmrf ${t}`]);
  });

  test("a process still working in a leftover (mmdebstrap of a dead build) is killed first, by pid and start time", async () => {
    const dead = `${H}/images/${tempName("default", "build", 901)}`;
    const w = world({ [`${dead}/.build/rootfs/bin/sh`]: "x" });
    w.procs.add(700, 11, ["perl", "/usr/bin/mmdebstrap", "--variant=essential", "bookworm", `${dead}/.build/rootfs`, "/etc/apt/sources.list"]);
    w.procs.add(701, 12, ["sleep", "100", `${dead}-not-it`]); // a different path that shares a prefix
    w.procs.add(702, 13, ["vim", `${H}/images/default/manifest.json`]);
    // a derive's chroot script: its first line in the log, not a hundred
    w.procs.add(703, 14, ["bash", "-c", `WORK=${dead}/.build\nset -e\n${"echo step\n".repeat(100)}`]);
    await sweepHome(w.deps);
    expect(w.procs.kills).toEqual([{ pid: 700, signal: "SIGKILL" }, { pid: 703, signal: "SIGKILL" }]);
    expect(w.fs.ops).toEqual([`rmrf ${dead}`]);
    expect(w.log.of("info")).toEqual([
      `sweep: killed pid 700 (perl /usr/bin/mmdebstrap --variant=essential) still working in ${dead}`,
      `sweep: killed pid 703 (bash -c WORK=${dead}/.build…) still working in ${dead}`,
      `sweep: removed ${dead} (image build dir of pid 901, gone)`,
    ]);
  });

  test("a leftover whose process will not die stays", async () => {
    const dead = `${H}/images/${tempName("default", "build", 901)}`;
    const w = world({ [`${dead}/x`]: "x" });
    w.procs.add(700, 11, ["mmdebstrap", `${dead}/.build/rootfs`]);
    w.procs.kill = (pid, signal) => (w.procs.kills.push({ pid, signal }), true); // D state: ignores SIGKILL
    const items = await sweepHome({ ...w.deps, killWaitMs: 200 });
    expect(w.fs.ops).toEqual([]);
    expect(items[0]!.kept).toBe("pid(s) 700 did not exit");
  });

  test("a mount under a leftover keeps it: rm -rf would cross into the mounted filesystem", async () => {
    const dead = `${H}/images/${tempName("default", "build", 901)}`;
    const mountinfo = [
      "22 1 0:21 / / rw - ext4 /dev/root rw",
      `90 22 0:5 / ${dead}/.build/rootfs/dev rw - devtmpfs udev rw`,
      "91 22 0:40 / /h/images/elsewhere rw - tmpfs t rw",
    ].join("\n");
    const w = world({ [`${dead}/.build/rootfs/dev/null`]: "x", "/proc/self/mountinfo": mountinfo });
    const items = await sweepHome(w.deps);
    expect(w.fs.ops).toEqual([]);
    expect(items[0]!.kept).toContain(`mounted under it: ${dead}/.build/rootfs/dev`);
  });

  test("mount points with escaped spaces are decoded", async () => {
    const dead = `${H}/vms/with space`;
    const w = world({ [`${dead}/x`]: "x", "/proc/self/mountinfo": `90 22 0:5 / /h/vms/with\\040space/m rw - tmpfs t rw` });
    const items = await sweepHome(w.deps);
    expect(items[0]!.kept).toContain("/h/vms/with space/m");
  });

  test("VM dirs and image dirs with no row go; those with a row stay", async () => {
    const w = world(
      {
        [`${H}/vms/a/handles.json`]: "{}",
        [`${H}/vms/orphan/system.img`]: "x",
        [`${H}/images/default/rootfs.ext4`]: "x",
        [`${H}/images/halfmade/rootfs.ext4`]: "x",
        [`${H}/images/notes.txt`]: "x",
        [`${H}/vms/stray-file`]: "x",
      },
      { vms: ["a"], images: ["default"] },
    );
    w.fs.dirs.add(`${H}/vms/empty`);
    w.procs.add(300, 5, ["qemu-system-x86_64", "-drive", `file=${H}/vms/orphan/system.img`]);
    const items = await sweepHome(w.deps);
    expect(items.map((i) => `${i.path}: ${i.why}`).sort()).toEqual([
      `${H}/images/halfmade: image dir with no row`,
      `${H}/vms/empty: VM dir with no row`,
      `${H}/vms/orphan: VM dir with no row`,
    ]);
    expect(w.procs.kills).toEqual([{ pid: 300, signal: "SIGKILL" }]);
    expect(w.left()).toEqual([`${H}/images/default/rootfs.ext4`, `${H}/images/notes.txt`, `${H}/vms/a/handles.json`, `${H}/vms/stray-file`]);
  });

  test("a VM the reconcile adopted is never killed: a snapshot dir with no row it runs on (its RAM file) stays while it runs; an unknown process there is killed", async () => {
    const snap = `${H}/snapshots/s1`;
    const w = world({ [`${snap}/memory.ram`]: "x", [`${H}/vms/a/handles.json`]: "{}", [`${H}/snapshots/s2/memory.ram`]: "x" }, { vms: ["a"] });
    w.procs.add(300, 5, ["qemu-system-x86_64", "-object", `memory-backend-file,id=pc.ram,size=256M,mem-path=${snap}/memory.ram,share=off`]);
    w.procs.add(301, 6, ["qemu-system-x86_64", "-object", `memory-backend-file,id=pc.ram,size=256M,mem-path=${H}/snapshots/s2/memory.ram,share=off`]);
    const items = await sweepHome({ ...w.deps, snapshots: [], vmProcesses: [{ name: "clone", pid: 300 }] });
    expect(w.procs.kills).toEqual([{ pid: 301, signal: "SIGKILL" }]);
    expect(items.find((i) => i.path === snap)!.kept).toBe("vm clone (pid 300) runs on it");
    expect(w.left()).toEqual([`${snap}/memory.ram`, `${H}/vms/a/handles.json`]);
    expect(w.log.of("warn")).toContain(`sweep: left ${snap} (snapshot dir with no row): vm clone (pid 300) runs on it`);
  });

  test("symlinks are never followed: a stray link goes by itself, a symlinked vms/ is not swept", async () => {
    const w = world({ "/elsewhere/precious/data": "x", [`${H}/vms/a/handles.json`]: "{}" }, { vms: ["a"] });
    w.fs.links.set(`${H}/vms/ghost`, "/elsewhere/precious");
    w.fs.links.set(`${H}/vms/a/${tempName("handles.json", "tmp", 901)}`, "/elsewhere/precious/data");
    await sweepHome(w.deps);
    expect(w.fs.links.size).toBe(0);
    expect(w.fs.files.get("/elsewhere/precious/data")).toBe("x");

    const w2 = world({ [`/other/${tempName("x", "tmp", 901)}`]: "x", [`/other/orphan/f`]: "x" });
    w2.fs.links.set(`${H}/vms`, "/other");
    await sweepHome({ ...w2.deps, paths: { ...paths, vmsDir: `${H}/vms` } });
    expect(w2.fs.ops).toEqual([]);
    expect(w2.log.of("warn")).toEqual([`sweep: ${H}/vms is not a plain dir; not swept`]);
  });

  test("an empty or missing home: nothing to do, nothing logged", async () => {
    const w = world({});
    expect(await sweepHome(w.deps)).toEqual([]);
    expect(w.log.lines).toEqual([]);
  });

  test("a failed removal is reported and the rest still go", async () => {
    const a = `${H}/vms/a/${tempName("handles.json", "tmp", 901)}`;
    const b = `${H}/vms/b`;
    const w = world({ [a]: "x", [`${b}/x`]: "x" }, { vms: ["a"] });
    const rm = w.fs.rmrf;
    w.fs.rmrf = async (p) => {
      if (p === a) throw new Error("EBUSY");
      return rm(p);
    };
    const items = await sweepHome(w.deps);
    expect(items.find((i) => i.path === a)?.kept).toBe("removing failed: EBUSY");
    expect(w.fs.files.has(`${b}/x`)).toBe(false);
  });
});
