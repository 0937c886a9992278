/**
 * Tool failure injection (issue 13): for every host program banger runs, a
 * stand-in first on the daemon's PATH that fails (`P: injected failure` on
 * stderr, exit 1), and a PATH on which P does not exist at all (a dir of
 * symlinks to every other program, used as the whole PATH). Then the
 * operation that needs P runs through dist/banger and each case must end
 * with: exit 1, one `banger: ...` line naming P (a missing one also names
 * `banger doctor` or the Debian package), the daemon's pid unchanged and
 * alive, and nothing left: no new file or dir under BANGER_HOME but logs,
 * nothing in the daemon's TMPDIR, no new row, no new process, no loop on a
 * file of ours, no tap.
 *
 * The daemon inherits the CLI's environment, so each case stops the group's
 * daemon and lets the next CLI call start one with the injected PATH.
 * Needs root (image build chroot/mkfs, tap in a netns, loops); the fake VMM
 * plugin stands in for a VM everywhere except the QEMU cases.
 *
 * | program            | operation that needs it                | how the test triggers it                              |
 * |--------------------|----------------------------------------|-------------------------------------------------------|
 * | mmdebstrap         | image build: rootfs                    | image build (kernel tools stood in)                   |
 * | apt-cache          | image build: resolve the kernel .deb   | image build, stand-in mmdebstrap                      |
 * | apt-get            | image build: download the kernel .deb  | image build, stand-in mmdebstrap/apt-cache            |
 * | dpkg-deb           | image build: unpack the kernel         | image build, stand-ins for the steps before           |
 * | gzip               | image build: vmlinux from the bzImage  | image build, the stand-in kernel is gzip-compressed   |
 * | sh                 | image build: vmlinux extraction pipe   | image build                                           |
 * | cp                 | image build: modules into the rootfs   | image build                                           |
 * | chroot             | image build: depmod in the rootfs      | image build                                           |
 * | dpkg-query         | image build: package list              | image build                                           |
 * | truncate           | image build: sparse rootfs file        | image build                                           |
 * | mkfs.ext4          | image build: rootfs.ext4               | image build                                           |
 * | cp                 | image import: rootfs copy              | image import                                          |
 * | cp                 | vm create: system disk copy            | vm create --driver fake                               |
 * | stat               | vm create --disk: current size         | vm create --disk 16M                                  |
 * | e2fsck             | vm create --disk: check before resize  | vm create --disk 16M                                  |
 * | resize2fs          | vm create --disk: grow                 | vm create --disk 16M                                  |
 * | truncate           | vm create --work-disk                  | vm create --work-disk 8M                              |
 * | mkfs.ext4          | vm create --work-disk                  | vm create --work-disk 8M                              |
 * | qemu-system-x86_64 | vm start --vmm qemu                    | vm start (the stand-in never boots anything)          |
 * | firecracker        | vm create --vmm firecracker            | missing only: refused at create (no usable KVM here)  |
 * | sh                 | vm create --net tap: netns check/hosts | vm create --net tap, daemon in a test netns           |
 * | ip                 | vm start --net tap: bridge, tap        | vm start, daemon in a test netns                      |
 * | sysctl             | vm start --net tap: ip_forward         | vm start, daemon in a test netns                      |
 * | iptables           | vm start --net tap: NAT rules          | vm start, daemon in a test netns                      |
 * | git                | workspace prepare: list files          | workspace prepare, real sshd on 127.0.0.1 as guest    |
 * | tar                | workspace prepare: stream the repo     | workspace prepare, real sshd on 127.0.0.1 as guest    |
 * | losetup            | storage-dm attach                      | attachSnapshot with the real Exec (see DM below)      |
 * | blockdev           | storage-dm attach                      | attachSnapshot with the real Exec                     |
 * | dmsetup            | storage-dm attach                      | attachSnapshot with the real Exec                     |
 *
 * Not run by banger (nothing to inject): qemu-img and cpio (doctor lists
 * them; the initramfs is written in TypeScript), busybox (read as a file,
 * /usr/bin/busybox), ssh (the CLI uses ssh2 in-process), ssh-keygen and
 * dropbearkey (a VM's keys are made in-process, plugins/guest/ssh-keys.ts:
 * the create group checks a seeded vm create with both failing). xz/zstd/lz4/bzip2
 * are the other bzImage payload formats: same code path as gzip.
 * DM: this machine has no device-mapper (/dev/mapper/control), so the
 * daemon's storage-dm probe turns the plugin off and no daemon operation
 * reaches losetup/blockdev/dmsetup; those cases run attachSnapshot (the
 * plugin's start step) in this process with the real Exec and the PATH
 * swapped, real loops, and check every loop is detached again.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { INITRD_MODULES } from "../../plugins/image/build.ts";
import { tapName } from "../../plugins/net-tap/subnet.ts";
import { attachSnapshot, cowBytesFor, detachSnapshot } from "../../plugins/storage-dm/snapshot.ts";
import { emptyHandles } from "../../src/shared/model.ts";
import { createExec } from "../../src/host/exec.ts";
import { alive, BANGER, FAKE_PLUGIN, ROOT, waitFor } from "../helpers/cli.ts";
import { minimalElf } from "../helpers/elf.ts";
import { git } from "../helpers/git.ts";
import { startSSHD, type TestSSHD } from "../helpers/sshd.ts";
import { killSessionGroups } from "../helpers/fake-guest.ts";

type Kind = "fails" | "missing";
const KINDS: Kind[] = ["fails", "missing"];
const IS_ROOT = process.getuid?.() === 0;
const IP = Bun.which("ip", { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }) ?? "/usr/sbin/ip";
/** Where the programs banger runs live; a "missing" PATH is a farm of links to all of these but one. */
const SYSTEM_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

const work = mkdtempSync(join(tmpdir(), "banger-tools-"));
const results: { group: string; prog: string; kind: Kind; op: string; result: string }[] = [];

// ---------- PATHs ----------

function _script(dir: string, name: string, body: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(dir, name), 0o755);
}

/** The daemon's PATH for one case: `standIns` (helpers that let an operation get as far as P) come before the system dirs. */
function pathFor(kind: Kind, prog: string, standIns: string | null, exitCode = 1): string {
  const id = `${prog}-${kind}-${Math.random().toString(36).slice(2, 8)}`;
  const dirs = [...(standIns ? [standIns] : []), ...SYSTEM_DIRS];
  if (kind === "fails") {
    const d = join(work, "fail", id);
    _script(d, prog, `echo "${prog}: injected failure" >&2\nexit ${exitCode}`);
    return [d, ...dirs].join(":");
  }
  const farm = join(work, "farm", id);
  mkdirSync(farm, { recursive: true });
  const seen = new Set<string>([prog]);
  for (const dir of dirs) {
    let names: string[] = [];
    try {
      names = readdirSync(dir);
    } catch {
      continue;
    }
    for (const n of names) {
      if (seen.has(n)) continue;
      try {
        const st = statSync(join(dir, n));
        if (!st.isFile() || !(st.mode & 0o111)) continue;
      } catch {
        continue;
      }
      seen.add(n);
      symlinkSync(join(dir, n), join(farm, n));
    }
  }
  return farm;
}

// ---------- one banger home per group ----------

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function group(name: string, o: { wrap?: string[]; env?: Record<string, string> } = {}) {
  const home = mkdtempSync(join(tmpdir(), `banger-tf-${name}-`));
  const tmp = join(work, `tmp-${name}`);
  mkdirSync(tmp);
  const base: Record<string, string> = {
    ...(process.env as Record<string, string>),
    BANGER_HOME: home,
    NO_COLOR: "1",
    BANGER_TAP_NETNS_ONLY: "1",
    BANGER_PLUGINS: FAKE_PLUGIN,
    BANGER_TEST_NODE: process.env.BANGER_TEST_NODE || Bun.which("node") || "node",
    TMPDIR: tmp,
    ...o.env,
  };
  let path = process.env.PATH ?? "";
  const run = (args: string[], extra: Record<string, string> = {}): Run => {
    const p = Bun.spawnSync([...(o.wrap ?? []), BANGER, ...args], { env: { ...base, PATH: path, ...extra }, stdin: "ignore", timeout: 90_000 });
    return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
  };
  const must = (args: string[], extra: Record<string, string> = {}): any => {
    const r = run(args, extra);
    if (r.code !== 0) throw new Error(`banger ${args.join(" ")}: exit ${r.code}: ${r.stderr}`);
    return args.includes("--json") ? JSON.parse(r.stdout) : r.stdout;
  };
  const daemonPid = (): number => {
    try {
      return Number(readFileSync(join(home, "daemon.pid"), "utf8").trim());
    } catch {
      return 0;
    }
  };
  return {
    name,
    home,
    tmp,
    base,
    run,
    must,
    daemonPid,
    /** Restart the daemon with this PATH (the next CLI call starts it). */
    restart(newPath: string): number {
      if (daemonPid() && alive(daemonPid())) run(["daemon", "stop"]);
      path = newPath;
      must(["vm", "list", "--json"]);
      const pid = daemonPid();
      expect(alive(pid)).toBe(true);
      return pid;
    },
    normalPath: () => process.env.PATH ?? "",
    async cleanup() {
      const pid = daemonPid();
      if (pid && alive(pid)) run(["daemon", "stop"]);
      if (pid && alive(pid)) process.kill(pid, "SIGKILL");
      for (const p of procsUnder(home)) {
        try {
          process.kill(p, "SIGKILL");
        } catch {}
      }
      rmSync(home, { recursive: true, force: true });
    },
  };
}
type Group = ReturnType<typeof group>;

// ---------- what a case may leave ----------

function walk(dir: string): string[] {
  let out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    out.push(p);
    if (e.isDirectory()) out = out.concat(walk(p));
  }
  return out;
}

function _ppid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
}

function _pids(): number[] {
  return readdirSync("/proc").filter((d) => /^\d+$/.test(d)).map(Number);
}

/** Processes whose command line names something under `home`. */
function procsUnder(home: string): number[] {
  return _pids().filter((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(home);
    } catch {
      return false;
    }
  });
}

/** The daemon's descendants plus anything naming the home (detached VMs), zombies excluded. */
function procsOf(g: Group, daemon: number): string[] {
  const out = new Set<number>(procsUnder(g.home));
  const children = new Map<number, number[]>();
  for (const p of _pids()) {
    try {
      const pp = _ppid(p);
      children.set(pp, [...(children.get(pp) ?? []), p]);
    } catch {}
  }
  const stack = [...(children.get(daemon) ?? [])];
  while (stack.length) {
    const p = stack.pop()!;
    out.add(p);
    stack.push(...(children.get(p) ?? []));
  }
  return [...out]
    .filter((p) => alive(p))
    .map((p) => {
      try {
        return `${p} ${readFileSync(`/proc/${p}/cmdline`, "utf8").replace(/\0/g, " ").trim()}`;
      } catch {
        return `${p}`;
      }
    })
    .sort();
}

function loopsOn(prefix: string): string[] {
  const r = Bun.spawnSync(["losetup", "-J", "-l"]);
  const text = r.stdout.toString().trim();
  if (!text) return [];
  const devs = (JSON.parse(text).loopdevices ?? []) as { name: string; "back-file": string | null }[];
  return devs.filter((d) => (d["back-file"] ?? "").includes(prefix)).map((d) => `${d.name} ${d["back-file"]}`);
}

/** The tap cases' bridge: shared by every tap VM and kept once made, like docker0 (never undone by a failed start). */
const BRIDGE = "bgtfbr0";

function links(netns: string | null): string[] {
  const r = Bun.spawnSync([IP, ...(netns ? ["-n", netns] : []), "-j", "link"]);
  return (JSON.parse(r.stdout.toString() || "[]") as { ifname: string }[]).map((l) => l.ifname).filter((n) => n !== BRIDGE).sort();
}

/** Everything a case is checked against, taken right before the operation and again after. */
function snapshot(g: Group, daemon: number, netns: string | null) {
  return {
    files: walk(g.home),
    // Bun unpacks ssh2's native addons there once per content hash (same name every time): not ours to clean
    tmp: walk(g.tmp).filter((f) => !/\/\.bun-[^/]*\.node$/.test(f)),
    vms: (g.must(["vm", "list", "--json"]) as { name: string }[]).map((v) => v.name).sort(),
    images: (g.must(["image", "list", "--json"]) as { name: string }[]).map((i) => i.name).sort(),
    procs: procsOf(g, daemon),
    loops: loopsOn(g.home),
    links: links(netns),
  };
}

/** New files a failed operation may leave: logs, the store's own files, the kernel .deb cache. */
const ALLOWED_NEW = [/\/vms$/, /\/fake-cleanup\.log$/, /\/daemon\.(log|pid)$/, /\/bangerd\.sock$/, /\/banger\.db(-wal|-shm)?$/, /\/vms\/[^/]+\/(serial|qemu)\.log$/, /\/cache(\/debs)?$/, /\/cache\/debs\/[^/]+\.deb$/, /\/fake-events\.log$/];

interface Expect {
  /** What the error line must name besides the program (default: P). */
  names?: RegExp;
  /** The CLI's exit code (default 1). */
  code?: number;
  /** The failing stand-in's exit code (default 1). */
  standInExit?: number;
}

/**
 * Run `op` (CLI args) on a daemon whose PATH lacks or fails P, and check the bar.
 * Returns the error line.
 */
async function injected(g: Group, prog: string, kind: Kind, standIns: string | null, args: string[], o: Expect & { netns?: string; op: string } = { op: "" }): Promise<string> {
  const pid = g.restart(pathFor(kind, prog, standIns, o.standInExit));
  const before = snapshot(g, pid, o.netns ?? null);
  const r = g.run(args);
  const errLines = r.stderr.split("\n").filter((l) => l !== "" && !/^\[\d+(\.\d+)?s\] /.test(l));
  const record = (result: string) => results.push({ group: g.name, prog, kind, op: o.op || args.join(" "), result });
  try {
    expect(alive(pid)).toBe(true);
    expect(g.daemonPid()).toBe(pid);
    expect({ code: r.code, lines: errLines.length, stderr: r.stderr }).toMatchObject({ code: o.code ?? 1, lines: 1 });
    expect(errLines[0]).toStartWith("banger: ");
    expect(errLines[0]).toContain(prog);
    if (kind === "missing") expect(errLines[0]).toMatch(o.names ?? /banger doctor|install /);
    else if (o.names) expect(errLines[0]).toMatch(o.names);
    // what the failure may not leave behind (processes get a moment to be reaped)
    await waitFor(() => procsOf(g, pid).join("\n") === before.procs.join("\n"), 3000, 50);
    const after = snapshot(g, pid, o.netns ?? null);
    const newFiles = after.files.filter((f) => !before.files.includes(f) && !ALLOWED_NEW.some((re) => re.test(f)));
    expect({ newFiles, tmp: after.tmp, vms: after.vms, images: after.images, procs: after.procs, loops: after.loops, links: after.links }).toEqual({
      newFiles: [],
      tmp: before.tmp,
      vms: before.vms,
      images: before.images,
      procs: before.procs,
      loops: before.loops,
      links: before.links,
    });
    record(o.code && o.code !== 1 ? `pass (exit ${o.code})` : o.standInExit ? `pass (stand-in exits ${o.standInExit})` : "pass");
  } catch (e) {
    record(`FAIL: ${errLines.join(" | ").slice(0, 200)}`);
    throw e;
  }
  return errLines[0] ?? "";
}

afterAll(() => {
  const w = (s: string, n: number) => s.padEnd(n);
  console.log(`\n${w("program", 20)} ${w("kind", 8)} ${w("operation", 34)} result`);
  for (const r of results) console.log(`${w(r.prog, 20)} ${w(r.kind, 8)} ${w(r.op, 34)} ${r.result}`);
  rmSync(work, { recursive: true, force: true });
});

// ---------- image build ----------

/** Stand-ins that let `image build` run in seconds without the network: a rootfs skeleton, a tiny "kernel" .deb, no depmod. */
function buildStandIns(dir: string): void {
  const kver = "6.1.0-99-cloud-amd64";
  const fixture = join(dir, "..", "kernel-fixture");
  mkdirSync(fixture, { recursive: true });
  // a "bzImage": junk, then a gzip stream of a minimal x86-64 ELF
  writeFileSync(join(fixture, "vmlinuz"), Buffer.concat([Buffer.alloc(600, 0x11), gzipSync(minimalElf(4096))]));
  _script(
    dir,
    "mmdebstrap",
    // sleeps so a kernel step failing meanwhile shows whether the build waits for it
    `for a; do prev2=$prev1; prev1=$a; done\nroot=$prev2\n/usr/bin/sleep 0.5\n/usr/bin/mkdir -p "$root/usr/sbin" "$root/usr/lib" "$root/etc" "$root/root" "$root/var/lib/dpkg"\n: > "$root/var/lib/dpkg/status"\necho "I: stand-in rootfs"`,
  );
  _script(dir, "apt-cache", `case "$1" in\ndepends) echo "linux-image-cloud-amd64"; echo "  Depends: linux-image-${kver}" ;;\npolicy) echo "linux-image-${kver}:"; echo "  Candidate: 6.1.99-1" ;;\nesac`);
  _script(dir, "apt-get", `[ "$1" = download ] && echo deb > "$2_6.1.99-1_amd64.deb"`);
  const mods = INITRD_MODULES.map((m) => `"$x/lib/modules/${kver}/kernel/${m}.ko"`).join(" ");
  _script(dir, "dpkg-deb", `x=$3\n/usr/bin/mkdir -p "$x/boot" "$x/lib/modules/${kver}/kernel"\n/usr/bin/cp "${fixture}/vmlinuz" "$x/boot/vmlinuz-${kver}"\nfor f in ${mods}; do echo ko > "$f"; done`);
  _script(dir, "chroot", "exit 0");
  _script(dir, "dpkg-query", 'echo "bash=5.2"');
}

const BUILD_PROGS = ["mmdebstrap", "apt-cache", "apt-get", "dpkg-deb", "gzip", "sh", "cp", "chroot", "dpkg-query", "truncate", "mkfs.ext4"];

describe.skipIf(!IS_ROOT)("image build", () => {
  let g: Group;
  const stand = join(work, "build-stand");
  beforeAll(() => {
    buildStandIns(stand);
    g = group("build");
  });
  afterAll(() => g?.cleanup());

  test("baseline: with the stand-ins alone the build succeeds (so each failure below is the injected one)", () => {
    g.restart(`${stand}:${g.normalPath()}`);
    const r = g.run(["image", "build", "--name", "baseline"]);
    expect(r.stderr).toContain("done: kernel 6.1.0-99-cloud-amd64");
    expect(r.code).toBe(0);
  });

  let n = 0;
  for (const prog of BUILD_PROGS) {
    for (const kind of KINDS) {
      test(`${prog} ${kind}`, async () => {
        // gzip is run through sh with its exit code ignored; the ELF check decides and names the tools
        rmSync(join(g.home, "cache"), { recursive: true, force: true }); // no cached kernel .deb: every step runs
        await injected(g, prog, kind, stand, ["image", "build", "--name", `b${n++}`], { op: "image build", names: prog === "gzip" ? /gzip/ : undefined });
      });
    }
  }
});

// ---------- image import, vm create (fake VMM) ----------

/** An 8 MiB ext4 rootfs, a kernel and an initrd (contents never booted). */
function imageFiles(dir: string) {
  mkdirSync(dir, { recursive: true });
  const f = { kernel: join(dir, "k"), rootfs: join(dir, "rootfs.ext4"), initrd: join(dir, "initrd") };
  writeFileSync(f.kernel, "kernel");
  writeFileSync(f.initrd, "initrd");
  expect(Bun.spawnSync(["truncate", "-s", "8M", f.rootfs]).exitCode).toBe(0);
  expect(Bun.spawnSync(["mkfs.ext4", "-q", "-F", f.rootfs]).exitCode).toBe(0);
  return f;
}

describe.skipIf(!IS_ROOT)("image import and vm create", () => {
  let g: Group;
  let f: ReturnType<typeof imageFiles>;
  beforeAll(() => {
    g = group("create");
    f = imageFiles(join(work, "img"));
    g.restart(g.normalPath());
    g.must(["image", "import", "--name", "plain", "--kernel", f.kernel, "--rootfs", f.rootfs]);
    g.must(["image", "import", "--name", "seeded", "--kernel", f.kernel, "--rootfs", f.rootfs, "--initrd", f.initrd]);
  });
  afterAll(() => g?.cleanup());

  const cases: { prog: string; op: string; args: (n: string) => string[]; expect?: Partial<Record<Kind, Expect>> }[] = [
    { prog: "cp", op: "image import", args: (n) => ["image", "import", "--name", n, "--kernel", f.kernel, "--rootfs", f.rootfs] },
    { prog: "cp", op: "vm create", args: (n) => ["vm", "create", n, "--image", "plain", "--driver", "fake"] },
    { prog: "stat", op: "vm create --disk", args: (n) => ["vm", "create", n, "--image", "plain", "--driver", "fake", "--disk", "16M"] },
    // e2fsck's exit 1 means "errors corrected" (banger goes on, by design): its stand-in fails for real, with 8
    { prog: "e2fsck", op: "vm create --disk", args: (n) => ["vm", "create", n, "--image", "plain", "--driver", "fake", "--disk", "16M"], expect: { fails: { standInExit: 8 } } },
    { prog: "resize2fs", op: "vm create --disk", args: (n) => ["vm", "create", n, "--image", "plain", "--driver", "fake", "--disk", "16M"] },
    { prog: "truncate", op: "vm create --work-disk", args: (n) => ["vm", "create", n, "--image", "plain", "--driver", "fake", "--work-disk", "8M"] },
    { prog: "mkfs.ext4", op: "vm create --work-disk", args: (n) => ["vm", "create", n, "--image", "plain", "--driver", "fake", "--work-disk", "8M"] },
  ];
  test("ssh-keygen and dropbearkey failing: vm create of an image with an initrd still makes its keys (in-process)", () => {
    const d = join(work, "fail", "keygens");
    for (const prog of ["ssh-keygen", "dropbearkey"]) _script(d, prog, `echo "${prog}: injected failure" >&2\nexit 1`);
    g.restart(`${d}:${g.normalPath()}`);
    try {
      const vm = g.must(["vm", "create", "keys-inproc", "--image", "seeded", "--driver", "fake", "--json"]);
      const keys = join(vm.runtime.vmDir, "keys");
      expect(readdirSync(keys).sort()).toEqual(["host_ed25519.pub", "host_ed25519_dropbear", "id_ed25519", "id_ed25519.pub"]);
      g.must(["vm", "delete", "keys-inproc", "--force"]);
    } finally {
      g.restart(g.normalPath());
    }
  });
  let n = 0;
  for (const c of cases) {
    for (const kind of KINDS) {
      test(`${c.prog} ${kind}: ${c.op}`, async () => {
        await injected(g, c.prog, kind, null, c.args(`c${n++}`), { op: c.op, ...c.expect?.[kind] });
      });
    }
  }
});

// ---------- QEMU and Firecracker ----------

describe.skipIf(!IS_ROOT)("vmm binaries", () => {
  let g: Group;
  beforeAll(() => {
    g = group("vmm", { env: { BANGER_PLUGINS: "" } });
    const f = imageFiles(join(work, "img-vmm"));
    g.restart(g.normalPath());
    g.must(["image", "import", "--name", "seeded", "--kernel", f.kernel, "--rootfs", f.rootfs, "--initrd", f.initrd]);
  });
  afterAll(() => g?.cleanup());

  for (const kind of KINDS) {
    test(`qemu-system-x86_64 ${kind}: vm start`, async () => {
      g.restart(g.normalPath());
      g.must(["vm", "create", `q-${kind}`, "--image", "seeded", "--vmm", "qemu"]);
      await injected(g, "qemu-system-x86_64", kind, null, ["vm", "start", `q-${kind}`], { op: "vm start --vmm qemu" });
    });
  }
  // refused up front as a bad request (exit 2, like an unknown vmm): firecracker-vmm.test.ts pins that
  test("firecracker missing: vm create --vmm firecracker", async () => {
    await injected(g, "firecracker", "missing", null, ["vm", "create", "fc", "--image", "seeded", "--vmm", "firecracker"], { op: "vm create --vmm firecracker", code: 2 });
  });
});

// ---------- tap networking, inside a network namespace of our own ----------

const NETNS = `bgt-tf${process.pid % 100000}`;
describe.skipIf(!IS_ROOT || !existsSync(IP))("tap networking (in a test netns)", () => {
  let g: Group;
  beforeAll(() => {
    Bun.spawnSync([IP, "netns", "del", NETNS]);
    expect(Bun.spawnSync([IP, "netns", "add", NETNS]).exitCode).toBe(0);
    Bun.spawnSync([IP, "-n", NETNS, "link", "set", "lo", "up"]);
    g = group("tap", { wrap: [IP, "netns", "exec", NETNS], env: { BANGER_TAP_SUBNET: "10.213.9.0/24", BANGER_TAP_BRIDGE: BRIDGE, BANGER_TAP_DNS: "" } });
    g.base.BANGER_HOSTS_FILE = join(g.home, "hosts");
    writeFileSync(g.base.BANGER_HOSTS_FILE, "127.0.0.1 localhost\n");
    const f = imageFiles(join(work, "img-tap"));
    g.restart(g.normalPath());
    g.must(["image", "import", "--name", "plain", "--kernel", f.kernel, "--rootfs", f.rootfs]);
  });
  afterAll(async () => {
    await g?.cleanup();
    Bun.spawnSync([IP, "netns", "del", NETNS]);
  });

  for (const kind of KINDS) {
    test(`sh ${kind}: vm create --net tap`, async () => {
      await injected(g, "sh", kind, null, ["vm", "create", `s-${kind}`, "--image", "plain", "--driver", "fake", "--net", "tap"], { op: "vm create --net tap", netns: NETNS });
    });
  }
  for (const prog of ["ip", "sysctl", "iptables"]) {
    for (const kind of KINDS) {
      test(`${prog} ${kind}: vm start --net tap`, async () => {
        const name = `t-${prog}-${kind}`;
        g.restart(g.normalPath());
        const vm = g.must(["vm", "create", name, "--image", "plain", "--driver", "fake", "--net", "tap", "--json"]);
        await injected(g, prog, kind, null, ["vm", "start", name], { op: "vm start --net tap", netns: NETNS });
        expect(links(NETNS)).not.toContain(tapName(vm.id));
      });
    }
  }
});

// ---------- workspace prepare (host git and tar; the guest is a real sshd on 127.0.0.1) ----------

describe.skipIf(!IS_ROOT)("workspace prepare", () => {
  let g: Group;
  let sshd: TestSSHD;
  const guestRoot = join(work, "guest");
  const repo = join(work, "repo");
  let vmPid = 0;
  beforeAll(async () => {
    sshd = await startSSHD();
    mkdirSync(guestRoot);
    g = group("ws", {
      env: {
        BANGER_PLUGINS: [FAKE_PLUGIN, join(ROOT, "test/fixtures/fake-guest-plugin.ts")].join(":"),
        BANGER_FAKE_SSH: JSON.stringify({ host: sshd.host, port: sshd.port, clientKey: sshd.clientKey, hostPublicKey: sshd.hostPublicKey }),
        BANGER_GUEST_STATE_ROOT: guestRoot,
      },
    });
    const f = imageFiles(join(work, "img-ws"));
    g.restart(g.normalPath());
    g.must(["image", "import", "--name", "plain", "--kernel", f.kernel, "--rootfs", f.rootfs]);
    vmPid = g.must(["vm", "create", "box", "--image", "plain", "--driver", "fake", "--start", "--json"]).pid;
    mkdirSync(repo);
    git(repo, "init", "-q", "-b", "main");
    writeFileSync(join(repo, "a.txt"), "a\n");
    git(repo, "add", ".");
    git(repo, "commit", "-q", "-m", "one");
  });
  afterAll(async () => {
    g?.run(["vm", "delete", "box", "--force"]);
    killSessionGroups(guestRoot);
    if (vmPid && alive(vmPid)) process.kill(vmPid, "SIGKILL");
    await g?.cleanup();
    await sshd?.stop();
  });

  for (const prog of ["git", "tar"]) {
    for (const kind of KINDS) {
      test(`${prog} ${kind}: workspace prepare`, async () => {
        const dest = join(guestRoot, `ws-${prog}-${kind}`);
        await injected(g, prog, kind, null, ["workspace", "prepare", "box", repo, "--guest-path", dest], { op: "workspace prepare" });
        expect(existsSync(dest)).toBe(false);
        expect(readdirSync(guestRoot).filter((e) => e.startsWith(".banger-"))).toEqual([]);
      });
    }
  }
});

// ---------- storage-dm's attach with the real Exec (no device-mapper on this machine: see the header) ----------

const canLoop = IS_ROOT && existsSync("/dev/loop-control");
describe.skipIf(!canLoop)("storage-dm attach (real loops, PATH swapped in this process)", () => {
  const exec = createExec();
  for (const prog of ["losetup", "blockdev", "dmsetup"]) {
    for (const kind of KINDS) {
      test(`${prog} ${kind}: attachSnapshot`, async () => {
        const dir = mkdtempSync(join(work, "dm-"));
        const base = join(dir, "rootfs.ext4");
        const cow = join(dir, "system.cow");
        writeFileSync(base, Buffer.alloc(0));
        Bun.spawnSync(["truncate", "-s", "4M", base]);
        Bun.spawnSync(["truncate", "-s", String(cowBytesFor(4 << 20)), cow]);
        const saved = process.env.PATH;
        process.env.PATH = pathFor(kind, prog, null);
        let msg = "";
        const h = emptyHandles();
        try {
          await attachSnapshot(exec, { vmId: "tf", baseFile: base, cowFile: cow }, h, async () => {});
        } catch (e) {
          msg = (e as Error).message;
        } finally {
          process.env.PATH = saved;
        }
        // what the plugin defers on its operation before attaching: the handles name what a failed attach made
        if (msg) expect(await detachSnapshot(exec, h)).toEqual([]);
        const left = loopsOn(dir);
        for (const l of left) Bun.spawnSync(["losetup", "-d", l.split(" ")[0]!]);
        try {
          expect(msg.split("\n").length).toBe(1);
          expect(msg).toContain(prog);
          if (kind === "missing") expect(msg).toMatch(/banger doctor|install /);
          expect(left).toEqual([]);
          expect([h.baseLoop, h.cowLoop, h.dmName]).toEqual(["", "", ""]);
          results.push({ group: "dm", prog, kind, op: "storage-dm attach (in-process)", result: "pass" });
        } catch (e) {
          results.push({ group: "dm", prog, kind, op: "storage-dm attach (in-process)", result: `FAIL: ${msg.slice(0, 200)}` });
          throw e;
        }
      });
    }
  }
});

test.skipIf(IS_ROOT)("tool failure injection needs root (image build chroot/mkfs, netns, loops)", () => {});

