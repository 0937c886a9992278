import { writeCpioGz, type CpioEntry } from "../../src/plugin-api.ts";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { BangerError, renderScript } from "../../src/plugin-api.ts";
import type { Exec, FS } from "../../src/plugin-api.ts";
import { extractVmlinux } from "./vmlinux.ts";
// Embedded as text so the compiled binary carries them.
import INIT_SH from "./init.sh" with { type: "text" };
import INITRAMFS_INIT_SH from "./initramfs-init.sh" with { type: "text" };
import EXEC_AGENT_PL from "./exec-agent.pl" with { type: "text" };

/** Bump when the recipe changes in a way that changes the image. */
export const RECIPE_VERSION = 9;
/** Where images carry the exec agent (init.sh names the same path). */
export const EXEC_AGENT_PATH = "/usr/lib/banger/exec-agent.pl";
export const SUITE = "bookworm";
export const KERNEL_META_PACKAGE = "linux-image-cloud-amd64";
export const ROOTFS_PACKAGES = [
  "bash",
  "coreutils",
  "git",
  "tar",
  "dropbear-bin",
  "iproute2",
  "procps",
  "ca-certificates",
  "mount",
  "kmod",
  // apt + its keyring: a guest can install software (`apt-get update && apt-get install -y jq`)
  // with the host's sources, which mmdebstrap already writes into the rootfs
  "apt",
] as const;
/** insmod order for the initramfs (virtio is modular in the cloud kernel; button+evdev for the ACPI power button). */
export const INITRD_MODULES = [
  "virtio_ring",
  "virtio",
  "virtio_mmio",
  "virtio_pci_modern_dev",
  "virtio_pci_legacy_dev",
  "virtio_pci",
  "virtio_blk",
  "failover",
  "net_failover",
  "virtio_net",
  "virtio-rng",
  // the guest agent's port (virtio-serial)
  "virtio_console",
  "vsock",
  "vmw_vsock_virtio_transport_common",
  "vmw_vsock_virtio_transport",
  "evdev",
  "button",
] as const;
export const ROOTFS_SIZE = "1G";
/** vmlinux: the same kernel uncompressed, which Firecracker needs on x86 (it cannot boot a bzImage). */
export const IMAGE_FILES = ["vmlinuz", "vmlinux", "initrd.img", "rootfs.ext4"] as const;
/** Host apt sources tried in order; the first that exists is mmdebstrap's mirror argument. */
export const APT_SOURCES_CANDIDATES = ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] as const;
/** What node's mkdir/writeFile create with (before the umask): the rootfs's dirs and files keep the modes they always had. */
const _DIR_MODE = 0o777;
const _FILE_MODE = 0o666;

export interface ImageManifest {
  name: string;
  kernelVersion: string;
  suite: string;
  /** "name=version" of every package in the rootfs, sorted. */
  packages: string[];
  files: Record<(typeof IMAGE_FILES)[number], { size: number; sha256: string }>;
  /** Kernel command line the image expects (the driver adds console/ip args). */
  kernelArgs: string[];
  createdAt: string;
  recipeVersion: number;
}

export interface BuildImageOptions {
  name: string;
  /** Output dir (an empty temp dir the caller renames into place). */
  dir: string;
  exec: Exec;
  fs: FS;
  progress: (msg: string) => void;
  /** Keeps downloaded kernel .debs between builds. */
  cacheDir?: string;
  /** Override the apt sources file (default: the host's, see APT_SOURCES_CANDIDATES). */
  aptSources?: string;
  /** A static busybox for the initramfs (default: busybox-static's /usr/bin/busybox). */
  busybox?: string;
}

/**
 * The host's apt sources file to hand mmdebstrap as its mirror argument, so
 * the build uses whatever mirror the host is configured for (never a
 * hard-coded host name).
 */
export async function findAptSources(fs: FS, exists: (p: string) => Promise<boolean> = (p) => _nonEmpty(fs, p)): Promise<string> {
  for (const p of APT_SOURCES_CANDIDATES) if (await exists(p)) return p;
  const names = (await fs.list("/etc/apt/sources.list.d")).map((e) => e.name).sort();
  for (const n of names) {
    if (!/\.(sources|list)$/.test(n)) continue;
    const p = `/etc/apt/sources.list.d/${n}`;
    if (/debian/i.test((await fs.readText(p)) ?? "")) return p;
  }
  throw new BangerError("E_MISSING_TOOL", "no Debian apt sources on this host (looked for /etc/apt/sources.list.d/debian.sources, /etc/apt/sources.list)");
}

/** The mmdebstrap argv (exported so tests can check it uses the host's sources file). */
export function mmdebstrapArgs(rootDir: string, sources: string): string[] {
  return [
    "--variant=essential",
    "--mode=root",
    "--format=directory",
    `--include=${ROOTFS_PACKAGES.join(",")}`,
    // Docs and translations are dead weight in a VM; licenses stay.
    "--dpkgopt=path-exclude=/usr/share/man/*",
    "--dpkgopt=path-exclude=/usr/share/info/*",
    "--dpkgopt=path-exclude=/usr/share/locale/*",
    "--dpkgopt=path-exclude=/usr/share/doc/*",
    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
    SUITE,
    rootDir,
    sources,
  ];
}

/**
 * Build a Debian guest image in `opts.dir`: vmlinuz (Debian's cloud
 * kernel, extracted, never installed on the host), vmlinux (the same kernel
 * uncompressed, for Firecracker), initrd.img (busybox +
 * virtio modules; mounts /dev/vda and switch_roots to /sbin/banger-init),
 * rootfs.ext4 (sparse, 1 GiB) and manifest.json. Needs root (mmdebstrap
 * root mode, chroot for depmod). About a minute.
 */
export async function buildImage(opts: BuildImageOptions): Promise<ImageManifest> {
  const { exec, fs, progress, dir } = opts;
  // the CLI stamps elapsed time on every progress line already
  const step = (msg: string) => progress(msg);
  const work = join(dir, ".build");
  const rootDir = join(work, "rootfs");
  await fs.mkdirp(work, _DIR_MODE);
  try {
    const sources = opts.aptSources ?? (await findAptSources(fs));
    step(`rootfs: mmdebstrap ${SUITE} (${ROOTFS_PACKAGES.join(" ")}) using ${sources}`);
    // The kernel download runs alongside mmdebstrap (which is the long pole). Both are
    // settled before anything else happens: a failure of one must neither go unhandled
    // nor have the build dir removed under the other while it still writes there.
    const [rootfsDone, kernelDone] = await Promise.allSettled([
      exec
        .run("mmdebstrap", mmdebstrapArgs(rootDir, sources), {
          env: { DEBIAN_FRONTEND: "noninteractive", LC_ALL: "C.UTF-8" },
          onLine: (l) => {
            if (/^(I|W|E): /.test(l)) step(`rootfs: ${l}`);
          },
        })
        .then(() => step("rootfs: mmdebstrap done")),
      _fetchKernel(opts, work, step),
    ]);
    if (rootfsDone.status === "rejected") throw rootfsDone.reason;
    if (kernelDone.status === "rejected") throw kernelDone.reason;
    const kernel = kernelDone.value;

    await fs.copyFile(kernel.vmlinuz, join(dir, "vmlinuz"));
    const elf = await extractVmlinux(exec, fs, join(dir, "vmlinuz"), join(dir, "vmlinux"));
    step(`kernel: vmlinux for firecracker (${elf.format} payload, ${(elf.size / 2 ** 20).toFixed(1)} MiB)`);

    step(`initrd: busybox + ${INITRD_MODULES.length} modules`);
    await fs.writeFile(join(dir, "initrd.img"), await buildBaseInitrd(fs, kernel.modulesDir, opts.busybox), _FILE_MODE);

    step(`rootfs: adding /sbin/banger-init and modules for ${kernel.version}`);
    await _customizeRootfs(exec, fs, rootDir, kernel);

    const packages = (
      await exec.run("dpkg-query", [`--admindir=${join(rootDir, "var/lib/dpkg")}`, "-W", "-f=${Package}=${Version}\\n"])
    ).stdout
      .split("\n")
      .filter(Boolean)
      .sort();

    step(`rootfs: mkfs.ext4 -d (${ROOTFS_SIZE}, sparse)`);
    const rootfs = join(dir, "rootfs.ext4");
    await exec.run("truncate", ["-s", ROOTFS_SIZE, rootfs]);
    await exec.run("mkfs.ext4", ["-q", "-F", "-L", "banger-root", "-m", "0", "-E", "root_owner=0:0", "-d", rootDir, rootfs]);

    step("manifest: hashing");
    const files = {} as ImageManifest["files"];
    for (const f of IMAGE_FILES) {
      const p = join(dir, f);
      const st = await fs.stat(p);
      if (!st) throw new BangerError("E_INTERNAL", `image build made no ${p}`);
      files[f] = { size: st.size, sha256: await sha256File(fs, p) };
    }
    const manifest: ImageManifest = {
      name: opts.name,
      kernelVersion: kernel.version,
      suite: SUITE,
      packages,
      files,
      kernelArgs: ["console=ttyS0", "panic=-1"],
      createdAt: new Date().toISOString(),
      recipeVersion: RECIPE_VERSION,
    };
    await fs.writeFile(join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`, _FILE_MODE);
    step(`done: kernel ${kernel.version}, ${packages.length} packages`);
    return manifest;
  } finally {
    await fs.rmrf(work);
  }
}

/** sha256 of a file, streamed (rootfs.ext4 is a 1 GiB sparse file). */
export async function sha256File(fs: FS, path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const chunk of fs.readStream(path, 4 << 20)) h.update(chunk);
  return h.digest("hex");
}

interface KernelParts {
  version: string;
  vmlinuz: string;
  /** lib/modules/<version> of the extracted package. */
  modulesDir: string;
}

async function _fetchKernel(opts: BuildImageOptions, work: string, step: (m: string) => void): Promise<KernelParts> {
  const { exec, fs } = opts;
  const deps = await exec.run("apt-cache", ["depends", "--important", KERNEL_META_PACKAGE]);
  const pkg = /Depends: (linux-image-[^\s<>]+)/.exec(deps.stdout)?.[1];
  if (!pkg) throw new BangerError("E_INTERNAL", `cannot resolve ${KERNEL_META_PACKAGE}'s kernel package (run apt-get update?)`);
  const debDir = opts.cacheDir ? join(opts.cacheDir, "debs") : join(work, "debs");
  await fs.mkdirp(debDir, _DIR_MODE);
  // apt-get download names the file <pkg>_<version>_<arch>.deb; reuse a cached one.
  const cand = await exec.run("apt-cache", ["policy", pkg]);
  const version = /Candidate: (\S+)/.exec(cand.stdout)?.[1] ?? "";
  const cached = (await _names(fs, debDir)).find((f) => f.startsWith(`${pkg}_${version.replace(/:/g, "%3a")}_`) && f.endsWith(".deb"));
  let deb: string;
  if (cached && version) {
    step(`kernel: ${pkg} ${version} (cached)`);
    deb = join(debDir, cached);
  } else {
    step(`kernel: apt-get download ${pkg} ${version}`);
    await exec.run("apt-get", ["download", pkg], { cwd: debDir, env: { DEBIAN_FRONTEND: "noninteractive" } });
    const got = (await _names(fs, debDir)).filter((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb")).sort();
    if (got.length === 0) throw new BangerError("E_INTERNAL", `apt-get download ${pkg} produced no .deb`);
    deb = join(debDir, got[got.length - 1]!);
  }
  const x = join(work, "kernel");
  await exec.run("dpkg-deb", ["-x", deb, x]);
  const mods = await _names(fs, join(x, "lib/modules"));
  if (mods.length !== 1) throw new BangerError("E_INTERNAL", `expected one kernel in ${pkg}, found ${mods.join(", ") || "none"}`);
  const kver = mods[0]!;
  step(`kernel: ${kver} extracted`);
  return { version: kver, vmlinuz: join(x, "boot", `vmlinuz-${kver}`), modulesDir: join(x, "lib/modules", kver) };
}

/** Index every .ko under a modules dir by module name. */
async function _moduleIndex(fs: FS, modulesDir: string): Promise<Map<string, string>> {
  const index = new Map<string, string>();
  for (const rel of await fs.listTree(modulesDir)) {
    const m = /([^/]+)\.ko$/.exec(rel);
    if (m) index.set(m[1]!, join(modulesDir, rel));
  }
  return index;
}

/** The image's base initramfs (gzip'd newc): busybox-static, the virtio/button/evdev modules, /init. */
export async function buildBaseInitrd(fs: FS, modulesDir: string, busyboxPath?: string): Promise<Uint8Array> {
  const busybox = busyboxPath ?? (await _which(fs, ["/usr/bin/busybox", "/bin/busybox"]));
  const bb = await fs.readBytes(busybox);
  // busybox-static is a static binary; a dynamic one would not run in the initramfs.
  const index = await _moduleIndex(fs, modulesDir);
  const entries: CpioEntry[] = [
    ...["bin", "dev", "proc", "sys", "newroot", "run", "tmp", "lib", "lib/modules"].map(
      (d): CpioEntry => ({ path: d, type: "dir", mode: 0o755 }),
    ),
    { path: "bin/busybox", type: "file", mode: 0o755, data: bb },
    { path: "bin/sh", type: "symlink", mode: 0o777, data: "busybox" },
    { path: "init", type: "file", mode: 0o755, data: renderScript(INITRAMFS_INIT_SH, { MODULES: INITRD_MODULES.join(" ") }) },
  ];
  for (const m of INITRD_MODULES) {
    const p = index.get(m);
    if (!p) throw new BangerError("E_INTERNAL", `kernel module ${m} not found in ${modulesDir}`);
    entries.push({ path: `lib/modules/${m}.ko`, type: "file", mode: 0o644, data: await fs.readBytes(p) });
  }
  return writeCpioGz(entries);
}

const _POWER_SHIM = (sig: string) => `#!/bin/sh
# banger: PID 1 (/sbin/banger-init) does the clean shutdown on ${sig}.
kill -${sig} 1
`;

async function _customizeRootfs(exec: Exec, fs: FS, root: string, kernel: KernelParts): Promise<void> {
  const usr = join(root, "usr");
  // merged /usr: /sbin and /lib are symlinks into /usr; write there so no host path is followed.
  await fs.mkdirp(join(usr, "lib/modules"), _DIR_MODE);
  await exec.run("cp", ["-a", kernel.modulesDir, join(usr, "lib/modules/")]);
  await exec.run("chroot", [root, "depmod", "-a", kernel.version]);

  await fs.writeFile(join(usr, "sbin/banger-init"), INIT_SH, _FILE_MODE);
  await fs.chmod(join(usr, "sbin/banger-init"), 0o755);
  for (const [name, sig] of [["poweroff", "USR1"], ["halt", "USR1"], ["shutdown", "USR1"], ["reboot", "USR2"]] as const) {
    const p = join(usr, "sbin", name);
    if (await fs.exists(p)) continue;
    await fs.writeFile(p, _POWER_SHIM(sig), _FILE_MODE);
    await fs.chmod(p, 0o755);
  }
  // the exec agent init.sh starts on the banger.exec port (run as `perl FILE`: no exec bit needed)
  const agent = join(root, EXEC_AGENT_PATH.slice(1));
  await fs.mkdirp(dirname(agent), _DIR_MODE);
  await fs.writeFile(agent, EXEC_AGENT_PL, _FILE_MODE);
  await fs.chmod(agent, 0o644);
  await fs.mkdirp(join(root, "work"), _DIR_MODE);
  await fs.mkdirp(join(root, "root/.ssh"), 0o700);
  // where dropbear -R reads its host key at each connection: the seed's (init.sh makes it when missing)
  await fs.mkdirp(join(root, "etc/dropbear"), _DIR_MODE);
  await exec.run("ln", ["-sfn", "/run/banger-seed/dropbear_ed25519_host_key", join(root, "etc/dropbear/dropbear_ed25519_host_key")]);
  await fs.writeFile(join(root, "etc/hostname"), "banger\n", _FILE_MODE);
  await fs.writeFile(join(root, "etc/fstab"), "# banger: /sbin/banger-init mounts everything\n", _FILE_MODE);
  // Key-only logins: a locked ("!") password would make some servers refuse the account.
  // (The essential variant has no /etc/shadow; base-passwd's root is already "*".)
  const shadow = join(root, "etc/shadow");
  const text = await fs.readText(shadow);
  if (text !== null) await fs.writeFile(shadow, text.replace(/^root:[^:]*:/m, "root:*:"), _FILE_MODE);
  await fs.writeFile(join(root, "etc/banger-image"), `recipe=${RECIPE_VERSION}\nkernel=${kernel.version}\n`, _FILE_MODE);
}

async function _which(fs: FS, cands: string[]): Promise<string> {
  for (const c of cands) if (await fs.exists(c)) return c;
  throw new BangerError("E_MISSING_TOOL", `none of ${cands.join(", ")} exists (install busybox-static)`);
}

/** The names in a dir ([] when it does not exist). */
async function _names(fs: FS, dir: string): Promise<string[]> {
  return (await fs.list(dir)).map((e) => e.name);
}

async function _nonEmpty(fs: FS, p: string): Promise<boolean> {
  const text = await fs.readText(p);
  return text !== null && text.split("\n").some((l) => /^\s*(deb\s|Types:|URIs:)/.test(l));
}
