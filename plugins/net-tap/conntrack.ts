// Where a connection the nat table redirected to the gate was going. The
// gate's socket only sees the bridge address; the kernel's conntrack entry
// keeps the original tuple. Node and Bun cannot ask for SO_ORIGINAL_DST, so
// it is read from /proc/net/nf_conntrack (the daemon's own namespace):
// the entry whose original source is the guest's address and port and whose
// reply comes from the gate's port.
import type { FS, OriginalDst } from "../../src/plugin-api.ts";
import { ipv4ToInt } from "../../src/plugin-api.ts";

export const CONNTRACK_FILE = "/proc/net/nf_conntrack";

/** The original destination of guest `from`:`fromPort`'s TCP connection redirected to `gatePort`, from nf_conntrack's text; null when no entry says. */
export function originalDstIn(text: string, from: string, fromPort: number, gatePort: number): OriginalDst | null {
  for (const line of text.split("\n")) {
    if (!line.startsWith("ipv4") || !line.includes(` tcp `)) continue;
    const src = [...line.matchAll(/ src=(\S+)/g)].map((m) => m[1]);
    const dst = [...line.matchAll(/ dst=(\S+)/g)].map((m) => m[1]);
    const sport = [...line.matchAll(/ sport=(\d+)/g)].map((m) => Number(m[1]));
    const dport = [...line.matchAll(/ dport=(\d+)/g)].map((m) => Number(m[1]));
    if (src.length < 2 || dst.length < 2 || sport.length < 2 || dport.length < 2) continue;
    if (src[0] !== from || sport[0] !== fromPort || sport[1] !== gatePort || dport[1] !== fromPort || dst[1] !== from) continue;
    const ip = dst[0]!;
    if (ipv4ToInt(ip) === null) return null;
    return { ip, port: dport[0]! };
  }
  return null;
}

export async function originalDst(fs: FS, from: string, fromPort: number, gatePort: number): Promise<OriginalDst | null> {
  const text = await fs.readText(CONNTRACK_FILE);
  return text === null ? null : originalDstIn(text, from, fromPort, gatePort);
}
