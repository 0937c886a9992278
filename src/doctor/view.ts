import { dirname, join } from "node:path";
import { configFrom, environ } from "../host/config.ts";
import { canOpenRW, freeBytes } from "../host/fs.ts";
import type { Exec, FS } from "../host/types.ts";
import { hasCapNetAdmin } from "../host/privileges.ts";
import { EXTRA_TOOLS, HOST_TOOLS, type DeviceAccess, type HostView } from "./checks.ts";

export interface GatherOptions {
  home: string;
  imageName?: string;
  env?: Record<string, string | undefined>;
  uid?: number;
  /** Can the path be opened read-write? Default: a real open(2), closed at once. */
  canOpen?: (path: string) => Promise<boolean>;
  /** Free bytes on the filesystem of an existing path, or null. Default: statfs(2). */
  freeBytes?: (path: string) => Promise<number | null>;
}

async function _firstLine(exec: Exec, tool: string | null): Promise<string | null> {
  if (!tool) return null;
  const r = await exec.run(tool, ["--version"], { check: false, timeoutMs: 10_000 }).catch(() => null);
  if (!r || r.exitCode !== 0) return null;
  return (r.stdout || r.stderr).trim().split("\n")[0] || null;
}

/** Look at the host once (read-only: lookups, `--version`, `dmsetup version`, opens without writes); diagnose() judges. */
export async function gatherHostView(host: { exec: Exec; fs: FS }, o: GatherOptions): Promise<HostView> {
  const env = o.env ?? environ();
  const canOpen = o.canOpen ?? canOpenRW;
  const free = o.freeBytes ?? freeBytes;
  const names = [...new Set([...HOST_TOOLS.map((t) => t.tool), ...EXTRA_TOOLS])];
  const tools = Object.fromEntries(await Promise.all(names.map(async (t) => [t, await host.exec.which(t)] as const)));
  const dev = async (path: string): Promise<DeviceAccess> => {
    const exists = await host.fs.exists(path);
    return { exists, rw: exists && (await canOpen(path)) };
  };

  const kvmDev = await dev("/dev/kvm");
  const forced = (configFrom(env).accel ?? "").trim().toLowerCase();
  const kernel = /\bdevice-mapper\b/.test((await host.fs.readText("/proc/misc")) ?? "");
  const control = await host.fs.exists("/dev/mapper/control");
  let versionOk = false;
  let versionError = "";
  // only with the node present: dmsetup would otherwise create /dev/mapper/control itself, and doctor changes nothing
  if (control && tools.dmsetup) {
    const r = await host.exec.run(tools.dmsetup, ["version"], { check: false, timeoutMs: 10_000 }).catch((e: Error) => ({ exitCode: 1, stdout: "", stderr: e.message }));
    versionOk = r.exitCode === 0;
    if (!versionOk) versionError = (r.stderr || r.stdout).trim().split("\n")[0] ?? "";
  }

  // the home may not exist yet: measure the filesystem it will live on
  let diskPath = o.home;
  while (!(await host.fs.exists(diskPath)) && dirname(diskPath) !== diskPath) diskPath = dirname(diskPath);
  const imageName = o.imageName ?? "default";
  const imageDir = join(o.home, "images", imageName);

  return {
    home: o.home,
    uid: o.uid ?? process.getuid?.() ?? -1,
    capNetAdmin: hasCapNetAdmin(await host.fs.readText("/proc/self/status")),
    kvm: { exists: kvmDev.exists, pvm: await host.fs.exists("/sys/module/kvm_pvm"), rw: kvmDev.rw, forced: forced === "kvm" || forced === "tcg" ? forced : "" },
    tools,
    versions: { qemu: await _firstLine(host.exec, tools["qemu-system-x86_64"] ?? null), firecracker: await _firstLine(host.exec, tools.firecracker ?? null) },
    dm: { kernel, control, versionOk, versionError },
    tun: await dev("/dev/net/tun"),
    loopControl: await dev("/dev/loop-control"),
    disk: { path: diskPath, freeBytes: await free(diskPath) },
    image: { name: imageName, present: await host.fs.exists(join(imageDir, "rootfs.ext4")), dir: imageDir },
  };
}
