import type { RouteName } from "../shared/routes.ts";

/** A command whose whole request is one parameterless GET, and the field of the answer its --json prints. */
export interface EarlyRead {
  route: RouteName;
  /**
   * routes[route].path, written out: the table in src/shared/routes.ts costs
   * an early `vm list --json` ~40 of its ~1000 page faults to load
   * (test/unit/early-reads.test.ts holds the two to each other).
   */
  path: string;
  key: string;
}

/**
 * Such commands, by their words: entry.ts sends the request before the CLI
 * loads (src/client/early.ts), and answers `--json` itself when the daemon's
 * answer needs nothing more. test/unit/early-reads.test.ts and
 * test/integration/early-read.test.ts hold each to its command.
 */
export const EARLY_READS: Readonly<Record<string, EarlyRead>> = {
  "vm list": { route: "vmList", path: "/v1/vms", key: "vms" },
  "image list": { route: "imageList", path: "/v1/images", key: "images" },
  "plugin list": { route: "pluginList", path: "/v1/plugins", key: "plugins" },
};

/** Flags that leave the request as it is: output shape and chattiness only. */
const NEUTRAL_FLAGS = new Set(["--json", "--quiet", "--verbose"]);

/** The early read for this command line, or null: its words name one of EARLY_READS, and every flag is neutral. */
export function earlyRead(argv: readonly string[]): EarlyRead | null {
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith("-")) {
      if (!NEUTRAL_FLAGS.has(a)) return null;
    } else words.push(a);
  }
  return EARLY_READS[words.join(" ")] ?? null;
}
