import type { FS } from "./types.ts";

/** Decode a mountinfo path (spaces, tabs, newlines and backslashes are octal escapes). */
function _unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** `path` is `root` or inside it. */
export function pathUnder(path: string, root: string): boolean {
  return path === root || path.startsWith(root + "/");
}

/** Every mount point the mountinfo file lists (default: this process's). */
export async function mountPoints(fs: Pick<FS, "readText">, mountinfo = "/proc/self/mountinfo"): Promise<string[]> {
  return ((await fs.readText(mountinfo)) ?? "")
    .split("\n")
    .map((l) => l.split(" ")[4])
    .filter((m): m is string => !!m)
    .map(_unescape);
}

/**
 * Remove a dir we made, unless something is mounted under it: a recursive rm would cross into the mount
 * (a tool killed mid-way can leave /proc, /sys or /dev bound inside a chroot). Throws, naming the mounts.
 */
export async function removeUnlessMounted(fs: Pick<FS, "readText" | "rmrf">, dir: string, mountinfo?: string): Promise<void> {
  const mounted = (await mountPoints(fs, mountinfo)).filter((m) => pathUnder(m, dir));
  if (mounted.length) throw new Error(`${dir} kept: mounted under it: ${mounted.join(", ")} (unmount, then restart the daemon)`);
  await fs.rmrf(dir);
}
