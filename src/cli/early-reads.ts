import type { RouteName } from "../shared/routes.ts";

/**
 * Commands whose whole request is one parameterless GET, by their words:
 * entry.ts sends it before the CLI loads (src/client/early.ts).
 * test/unit/early-reads.test.ts holds each to the route its command asks.
 */
export const EARLY_READS: Readonly<Record<string, RouteName>> = {
  "vm list": "vmList",
  "image list": "imageList",
  "plugin list": "pluginList",
};

/** Flags that leave the request as it is: output shape and chattiness only. */
const NEUTRAL_FLAGS = new Set(["--json", "--quiet", "--verbose"]);

/** The early read for this command line, or null: its words name one of EARLY_READS, and every flag is neutral. */
export function earlyRead(argv: readonly string[]): RouteName | null {
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith("-")) {
      if (!NEUTRAL_FLAGS.has(a)) return null;
    } else words.push(a);
  }
  return EARLY_READS[words.join(" ")] ?? null;
}
