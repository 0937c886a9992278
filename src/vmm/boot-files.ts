import { BangerError } from "../shared/errors.ts";
import { tempPathFor } from "../shared/temps.ts";
import type { Host } from "../host/types.ts";
import type { BootConfig } from "./driver.ts";

/** Refuse a launch whose initrds or disks are missing, naming the first one, before anything is touched. */
export async function requireBootFiles(host: Host, boot: BootConfig): Promise<void> {
  for (const f of [...boot.initrdPaths, ...boot.disks.map((d) => d.path)]) {
    if (!(await host.fs.exists(f))) throw new BangerError("E_NOT_FOUND", `boot file not found: ${f}`);
  }
}

/** Write `initrds` into one file at `out` (atomically): a VMM takes one initrd, and the kernel unpacks concatenated cpio archives in order. */
export async function joinInitrds(host: Host, out: string, initrds: string[]): Promise<void> {
  await host.exec.run("sh", ["-c", 'out=$1; tmp=$2; shift 2; cat -- "$@" > "$tmp" && mv -f -- "$tmp" "$out"', "sh", out, tempPathFor(out), ...initrds]);
}
