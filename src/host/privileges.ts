import type { FS } from "./types.ts";

/** What this process may do, as /proc/self/status says: its effective uid (null: unknown) and CAP_NET_ADMIN. */
export interface Privileges {
  uid: number | null;
  capNetAdmin: boolean;
}

/** CAP_NET_ADMIN is bit 12 of CapEff in /proc/self/status. */
export function hasCapNetAdmin(status: string | null): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(status ?? "");
  return !!m && (BigInt(`0x${m[1]}`) & (1n << 12n)) !== 0n;
}

/** From /proc/self/status's text: `Uid:` real, effective, saved, fs. */
export function parsePrivileges(status: string | null): Privileges {
  const m = /^Uid:\s*\d+\s+(\d+)/m.exec(status ?? "");
  return { uid: m ? Number(m[1]) : null, capNetAdmin: hasCapNetAdmin(status) };
}

export async function readPrivileges(fs: Pick<FS, "readText">): Promise<Privileges> {
  return parsePrivileges(await fs.readText("/proc/self/status"));
}
