import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { cp, mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import {
  EXEC_AGENT_PATH,
  INITRD_MODULES,
  ROOTFS_PACKAGES,
  buildBaseInitrd,
  buildImage,
  findAptSources,
  mmdebstrapArgs,
  sha256File,
} from "../../plugins/image/build.ts";
import EXEC_AGENT_PL from "../../plugins/image/exec-agent.pl" with { type: "text" };
import { readConcatenatedCpioGz } from "../../src/shared/cpio.ts";
import { createFS } from "../../src/host/fs.ts";
import type { Exec, ExecOptions, ExecResult } from "../../src/host/types.ts";
import { minimalElf } from "../helpers/elf.ts";
import { fakeFS } from "../helpers/fakes.ts";

const KVER = "6.1.0-99-cloud-amd64";
const fs = createFS();

interface Call {
  cmd: string;
  args: string[];
  opts?: ExecOptions;
}

/** Records every command; simulates just enough of each tool's effect on disk. */
function fakeExec(calls: Call[]): Exec {
  const ok = (stdout = ""): ExecResult => ({ stdout, stderr: "", exitCode: 0 });
  return {
    async run(cmd, args, opts) {
      calls.push({ cmd, args, opts });
      switch (cmd) {
        case "apt-cache":
          if (args[0] === "depends") return ok(`linux-image-cloud-amd64\n  Depends: linux-image-${KVER}\n`);
          return ok(`linux-image-${KVER}:\n  Installed: (none)\n  Candidate: 6.1.999-1\n`);
        case "apt-get":
          await writeFile(join(opts!.cwd!, `linux-image-${KVER}_6.1.999-1_amd64.deb`), "deb");
          return ok();
        case "dpkg-deb": {
          const x = args[2]!;
          await mkdir(join(x, "boot"), { recursive: true });
          // a bzImage-like file: setup code, then a gzip-magic payload
          await writeFile(join(x, "boot", `vmlinuz-${KVER}`), Buffer.concat([Buffer.from("setup"), Buffer.from([0x1f, 0x8b, 0x08]), Buffer.from("payload")]));
          for (const m of INITRD_MODULES) {
            const p = join(x, "lib/modules", KVER, "kernel/drivers", `${m}.ko`);
            await mkdir(dirname(p), { recursive: true });
            await writeFile(p, `module ${m}`);
          }
          return ok();
        }
        case "mmdebstrap": {
          const root = args[args.length - 2]!;
          for (const d of ["etc", "usr/sbin", "usr/lib", "var/lib/dpkg", "root"]) await mkdir(join(root, d), { recursive: true });
          return ok();
        }
        case "cp":
          await cp(args[1]!, join(args[2]!, "x"), { recursive: true });
          return ok();
        case "sh":
          // tail -c +OFF SRC | TOOL -dc > OUT: what the decompressor would write
          if (args[1]!.includes("tail -c")) await writeFile(args[5]!, minimalElf(100));
          return ok();
        case "dpkg-query":
          return ok("git=1:2.39.5-0+deb12u2\nbash=5.2.15-2+b7\n");
        case "truncate":
          await writeFile(args[2]!, new Uint8Array(4096));
          return ok();
        default:
          return ok();
      }
    },
    async spawnDetached() {
      throw new Error("not used");
    },
    async which(cmd) {
      return `/usr/bin/${cmd}`;
    },
  };
}

let tmp: string;
beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), "banger-image-test-"));
});
afterEach(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function build(calls: Call[], aptSources = "/etc/apt/sources.list.d/debian.sources") {
  const dir = join(tmp, "out");
  await mkdir(dir);
  const busybox = join(tmp, "busybox");
  await writeFile(busybox, "#!fake busybox");
  const progress: string[] = [];
  const manifest = await buildImage({ name: "default", dir, exec: fakeExec(calls), fs, progress: (m) => progress.push(m), aptSources, busybox });
  return { dir, manifest, progress };
}

describe("buildImage", () => {
  test("mmdebstrap uses the host's apt sources file and never a mirror host name", async () => {
    const calls: Call[] = [];
    await build(calls, "/etc/apt/sources.list.d/debian.sources");
    const mm = calls.filter((c) => c.cmd === "mmdebstrap");
    expect(mm).toHaveLength(1);
    const args = mm[0]!.args;
    expect(args[args.length - 1]).toBe("/etc/apt/sources.list.d/debian.sources");
    expect(args).toContain("--variant=essential");
    expect(args).toContain("bookworm");
    const include = args.find((a) => a.startsWith("--include="))!;
    for (const p of ["bash", "coreutils", "git", "tar", "dropbear-bin", "iproute2", "procps", "ca-certificates", "mount"]) {
      expect(include.slice("--include=".length).split(",")).toContain(p);
    }
    // No URL or host name anywhere in any command we ran.
    for (const c of calls) {
      for (const a of [c.cmd, ...c.args]) {
        expect(a).not.toMatch(/:\/\/|\bdeb\.debian\.org\b|\.(org|com|net|io)(\/|$)/);
      }
    }
  });

  test("kernel comes from apt-get download + dpkg-deb -x, never installed", async () => {
    const calls: Call[] = [];
    await build(calls);
    const cmds = calls.map((c) => [c.cmd, ...c.args].join(" "));
    expect(cmds).toContain(`apt-get download linux-image-${KVER}`);
    expect(cmds.some((c) => c.startsWith("dpkg-deb -x "))).toBe(true);
    expect(cmds.some((c) => /apt-get (install|-y)|dpkg -i|dpkg --install/.test(c))).toBe(false);
  });

  test("produces vmlinuz, initrd.img (busybox + modules + /init), rootfs.ext4 and a manifest", async () => {
    const calls: Call[] = [];
    const { dir, manifest, progress } = await build(calls);
    expect(manifest.name).toBe("default");
    expect(manifest.kernelVersion).toBe(KVER);
    expect(manifest.packages).toEqual(["bash=5.2.15-2+b7", "git=1:2.39.5-0+deb12u2"]);
    expect(manifest.recipeVersion).toBeGreaterThan(0);
    expect(Number.isNaN(Date.parse(manifest.createdAt))).toBe(false);
    for (const f of ["vmlinuz", "vmlinux", "initrd.img", "rootfs.ext4"] as const) {
      const p = join(dir, f);
      expect(manifest.files[f].size).toBe((await stat(p)).size);
      expect(manifest.files[f].sha256).toBe(await sha256File(fs, p));
    }
    // vmlinux came from decompressing vmlinuz from its payload magic (after the 5 "setup" bytes)
    const x = calls.find((c) => c.cmd === "sh" && c.args[1]!.includes("tail -c"))!;
    expect(x.args.slice(3)).toEqual(["6", join(dir, "vmlinuz"), join(dir, "vmlinux"), "gzip", "-dc"]);
    const onDisk = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8"));
    expect(onDisk).toEqual(manifest);
    // the work dir is gone: dir holds only the image
    expect((await Array.fromAsync(new Bun.Glob("*").scan({ cwd: dir, dot: true }))).sort()).toEqual([
      "initrd.img",
      "manifest.json",
      "rootfs.ext4",
      "vmlinux",
      "vmlinuz",
    ]);
    const [initrd] = readConcatenatedCpioGz(new Uint8Array(await readFile(join(dir, "initrd.img"))));
    const paths = initrd!.map((e) => e.path);
    expect(paths).toContain("init");
    expect(paths).toContain("bin/busybox");
    for (const m of INITRD_MODULES) expect(paths).toContain(`lib/modules/${m}.ko`);
    const init = new TextDecoder().decode(initrd!.find((e) => e.path === "init")!.data);
    expect(init).toStartWith(`#!/bin/busybox sh\nMODULES='${INITRD_MODULES.join(" ")}'\n`);
    expect(init).toContain(`for m in $MODULES; do`);
    expect(progress.length).toBeGreaterThan(4);
    // mkfs.ext4 -d fills the sparse file from the tree
    const mkfs = calls.find((c) => c.cmd === "mkfs.ext4")!;
    expect(mkfs.args).toContain("-d");
  });

  test("rootfs gets /sbin/banger-init and power shims", async () => {
    const calls: Call[] = [];
    let rootSnapshot = "";
    const exec = fakeExec(calls);
    const wrapped: Exec = {
      ...exec,
      async run(cmd, args, opts) {
        const r = await exec.run(cmd, args, opts);
        if (cmd === "mkfs.ext4") {
          const root = args[args.indexOf("-d") + 1]!;
          rootSnapshot = await readFile(join(root, "usr/sbin/banger-init"), "utf8");
          expect(await readFile(join(root, "usr/sbin/poweroff"), "utf8")).toContain("kill -USR1 1");
          expect((await stat(join(root, "usr/sbin/banger-init"))).mode & 0o777).toBe(0o755);
          // the exec agent, as init.sh names it, the very text of plugins/image/exec-agent.pl
          expect(await readFile(join(root, EXEC_AGENT_PATH.slice(1)), "utf8")).toBe(EXEC_AGENT_PL);
          expect((await stat(join(root, EXEC_AGENT_PATH.slice(1)))).mode & 0o777).toBe(0o644);
          expect(rootSnapshot).toContain(`EXEC_AGENT=${EXEC_AGENT_PATH}\n`);
          // through host.fs the rootfs keeps the modes node's own writeFile/mkdir defaults gave it (0666/0777 less the umask)
          await writeFile(join(tmp, "ref-file"), "");
          await mkdir(join(tmp, "ref-dir"));
          const fileMode = (await stat(join(tmp, "ref-file"))).mode & 0o777;
          const dirMode = (await stat(join(tmp, "ref-dir"))).mode & 0o777;
          for (const f of ["etc/hostname", "etc/fstab", "etc/banger-image"]) expect((await stat(join(root, f))).mode & 0o777).toBe(fileMode);
          expect((await stat(join(root, "work"))).mode & 0o777).toBe(dirMode);
          expect((await stat(join(root, "root/.ssh"))).mode & 0o777).toBe(0o700);
        }
        return r;
      },
    };
    const dir = join(tmp, "out2");
    await mkdir(dir);
    const busybox = join(tmp, "busybox");
    await writeFile(busybox, "x");
    await buildImage({ name: "x", dir, exec: wrapped, fs, progress: () => {}, aptSources: "/x.sources", busybox });
    expect(rootSnapshot).toContain("BANGER-READY");
  });
});

describe("buildBaseInitrd through host.fs", () => {
  test("finds the modules at any depth of the modules dir and reads them through the FS it is given", async () => {
    const mods = "/k/lib/modules/6.1";
    const files: Record<string, string> = { "/bb": "busybox bytes" };
    for (const m of INITRD_MODULES) files[`${mods}/kernel/drivers/${m.length % 2 ? "a" : "b/c"}/${m}.ko`] = `module ${m}`;
    const [initrd] = readConcatenatedCpioGz(await buildBaseInitrd(fakeFS(files), mods, "/bb"));
    const text = (p: string) => new TextDecoder().decode(initrd!.find((e) => e.path === p)!.data);
    expect(text("bin/busybox")).toBe("busybox bytes");
    for (const m of INITRD_MODULES) expect(text(`lib/modules/${m}.ko`)).toBe(`module ${m}`);
  });

  test("a module missing from the tree is named", async () => {
    await expect(buildBaseInitrd(fakeFS({ "/bb": "x" }), "/nowhere", "/bb")).rejects.toThrow(`kernel module ${INITRD_MODULES[0]} not found in /nowhere`);
  });
});

describe("apt sources", () => {
  test("prefers debian.sources, then sources.list", async () => {
    expect(await findAptSources(fs, async (p) => p.endsWith("debian.sources") || p.endsWith("sources.list"))).toBe(
      "/etc/apt/sources.list.d/debian.sources",
    );
    expect(await findAptSources(fs, async (p) => p === "/etc/apt/sources.list")).toBe("/etc/apt/sources.list");
  });

  test("mmdebstrapArgs ends with suite, target, sources file", () => {
    const a = mmdebstrapArgs("/tmp/r", "/etc/apt/sources.list");
    expect(a.slice(-3)).toEqual(["bookworm", "/tmp/r", "/etc/apt/sources.list"]);
    expect(a.find((x) => x.startsWith("--include="))).toBe(`--include=${ROOTFS_PACKAGES.join(",")}`);
  });

  // The bug that killed the daemon: mmdebstrap failed while the kernel download was
  // awaited, so its rejection was unhandled. Both must settle, the first failure wins,
  // and the build dir is only removed once neither writes into it any more.
  for (const [what, failing] of [
    ["mmdebstrap fails while the kernel is still downloading", "mmdebstrap"],
    ["the kernel download fails while mmdebstrap still runs", "apt-get"],
  ] as const) {
    test(`${what}: one rejection, none unhandled, nothing left in .build`, async () => {
      const calls: Call[] = [];
      const base = fakeExec(calls);
      let otherFinished = false;
      const exec: Exec = {
        ...base,
        async run(cmd, args, opts) {
          if (cmd === failing) {
            calls.push({ cmd, args, opts });
            throw new Error(`${cmd}: injected failure`);
          }
          const slow = failing === "mmdebstrap" ? cmd === "apt-get" : cmd === "mmdebstrap";
          if (slow) {
            await Bun.sleep(150);
            const r = await base.run(cmd, args, opts);
            otherFinished = true;
            return r;
          }
          return base.run(cmd, args, opts);
        },
      };
      const unhandled: unknown[] = [];
      const onUnhandled = (e: unknown) => unhandled.push(e);
      process.on("unhandledRejection", onUnhandled);
      try {
        const dir = join(tmp, "out");
        await mkdir(dir);
        const err = await buildImage({ name: "default", dir, exec, fs, progress: () => {}, aptSources: "/x.sources", busybox: join(tmp, "bb") }).then(
          () => null,
          (e: Error) => e,
        );
        expect(err?.message).toBe(`${failing}: injected failure`);
        expect(otherFinished).toBe(true); // waited for, not left running into a removed dir
        await Bun.sleep(20);
        expect(unhandled).toEqual([]);
        expect(await stat(join(dir, ".build")).catch(() => null)).toBeNull();
      } finally {
        process.off("unhandledRejection", onUnhandled);
      }
    });
  }
});
