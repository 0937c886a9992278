import { randomBytes } from "node:crypto";
import { basename, dirname, join } from "node:path";

/**
 * The one place that names temporary files and dirs under $BANGER_HOME, so
 * the writers and the daemon's startup sweep (src/daemon/sweep.ts) agree on
 * what is a leftover. A temp is `.<target>.<kind>-<pid>-<random>` next to
 * its target: hidden, tagged with what made it, and with the pid of the
 * process that made it (the sweep leaves a temp alone while that pid lives).
 */
export type TempKind = "tmp" | "build" | "import";

const _TEMP_RE = /^\.(.+)\.(tmp|build|import)-(\d+)-([0-9a-z]+)$/;
/** Names older versions used: atomic writes (`.<f>.<12 hex>.tmp`), the seed initrd (`<f>.tmp-<pid>`), the drivers' initrd concat (`<f>.tmp`). */
const _LEGACY = [/^\.(.+)\.[0-9a-f]{12}\.tmp$/, /^(.+)\.tmp-(\d+)$/, /^(initrd\.img)\.tmp$/];

/** A temp name for `target` in the same dir (so the final rename stays on one filesystem). */
export function tempPathFor(target: string, kind: TempKind = "tmp", pid = process.pid): string {
  return join(dirname(target), tempName(basename(target), kind, pid));
}

export function tempName(targetName: string, kind: TempKind = "tmp", pid = process.pid): string {
  return `.${targetName}.${kind}-${pid}-${randomBytes(6).toString("hex")}`;
}

export interface ParsedTemp {
  kind: TempKind | "legacy";
  /** The name of what the temp was to become. */
  target: string;
  /** The process that made it; 0 when the name does not say. */
  pid: number;
}

/** Is this file name one of our temps, and whose? null for anything else. */
export function parseTempName(name: string): ParsedTemp | null {
  const m = _TEMP_RE.exec(name);
  if (m) return { kind: m[2] as TempKind, target: m[1]!, pid: Number(m[3]) };
  for (const re of _LEGACY) {
    const l = re.exec(name);
    if (l) return { kind: "legacy", target: l[1]!, pid: l[2] ? Number(l[2]) : 0 };
  }
  return null;
}
