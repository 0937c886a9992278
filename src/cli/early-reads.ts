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

/**
 * The early read for this command line, or null: its words name one of
 * EARLY_READS, and every other word is a flag that leaves the request as it
 * is (output shape and chattiness only: --json, --quiet, --verbose). Plain
 * comparisons in an indexed loop: every command runs this first, before
 * anything is compiled (scripts/build.sh, --compile-jit-policy).
 */
export function earlyRead(argv: readonly string[]): EarlyRead | null {
  let words: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--json" || a === "--quiet" || a === "--verbose") continue;
    // a flag that may change the request, or a word that is not one ("", "vm list" as one argument)
    if (a.startsWith("-") || a === "" || a.includes(" ")) return null;
    words = words === null ? a : `${words} ${a}`;
  }
  // own keys only: `banger constructor` is no early read
  return words !== null && Object.hasOwn(EARLY_READS, words) ? EARLY_READS[words]! : null;
}
