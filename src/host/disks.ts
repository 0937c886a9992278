import type { Exec } from "./types.ts";

/** A sparse ext4 work disk made by userspace tools (nothing is mounted); storage plugins share it. */
export async function makeWorkDisk(exec: Exec, out: string, sizeMiB: number): Promise<void> {
  await exec.run("truncate", ["-s", `${sizeMiB}M`, out]);
  await exec.run("mkfs.ext4", ["-q", "-F", "-L", "banger-work", out]);
}
