import { createHash } from "node:crypto";
import { BangerError } from "../../src/plugin-api.ts";
import type { Host } from "../../src/plugin-api.ts";

/** One `<ip> <name>.vm` line. */
export interface HostsEntry {
  ip: string;
  name: string;
}

/**
 * The marker that brackets this daemon's block. It carries a hash of
 * BANGER_HOME so two banger homes sharing /etc/hosts never rewrite each
 * other's entries.
 */
export function hostsMarker(home: string): string {
  return `banger ${createHash("sha256").update(home).digest("hex").slice(0, 10)}`;
}

/**
 * `text` with our block replaced by `entries` (or removed when there are
 * none); every other line is kept as it was.
 */
export function withHostsBlock(text: string, marker: string, entries: HostsEntry[]): string {
  const begin = `# BEGIN ${marker} (managed by banger net-tap; do not edit)`;
  const end = `# END ${marker}`;
  const out: string[] = [];
  let inside = false;
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  for (const line of lines) {
    if (line.startsWith(`# BEGIN ${marker}`)) inside = true;
    else if (inside && line === end) inside = false;
    else if (!inside) out.push(line);
  }
  if (entries.length > 0) {
    out.push(begin);
    for (const e of [...entries].sort((a, b) => a.name.localeCompare(b.name))) out.push(`${e.ip}\t${e.name}`);
    out.push(end);
  }
  return out.length ? out.join("\n") + "\n" : "";
}

/**
 * Rewrite the hosts file with our block. Atomic (temp file + rename) where
 * possible; a hosts file that is a bind mount (containers, `ip netns exec`)
 * cannot be renamed over, so that one is rewritten in place.
 */
export async function rewriteHostsFile(host: Host, path: string, marker: string, entries: HostsEntry[]): Promise<void> {
  const before = (await host.fs.readText(path)) ?? "";
  const after = withHostsBlock(before, marker, entries);
  if (after === before) return;
  try {
    await host.fs.writeAtomic(path, after, 0o644);
  } catch (e) {
    const code = String((e as { code?: string }).code ?? e);
    if (/EACCES|EPERM|EROFS/.test(code)) {
      throw new BangerError("E_INTERNAL", `cannot write ${path} for <name>.vm entries (${code}): run the daemon as root or set BANGER_HOSTS_FILE to a file it may write`, { cause: e });
    }
    if (!/EBUSY|EXDEV/.test(code)) throw e;
    await host.exec.run("sh", ["-c", 'cat > "$1"', "sh", path], { input: after });
  }
}
