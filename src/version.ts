// the one field, not the whole document: every command evaluates this module, and the bundle keeps only what is imported
import { version } from "../package.json" with { type: "json" };

declare const BANGER_BUILD_ID: string | undefined;

/** Build id baked in by `bun build --define`; "dev" when run from source. */
export const BUILD_ID: string = typeof BANGER_BUILD_ID === "string" ? BANGER_BUILD_ID : "dev";
export const VERSION: string = version;
/** What the CLI and daemon compare in the handshake. */
export const FULL_VERSION = `${VERSION}+${BUILD_ID}`;
/**
 * The handshake rides on every request: the CLI names its FULL_VERSION in this
 * header, a daemon of another build refuses the request unread (E_DAEMON_VERSION),
 * and every answer carries the daemon's own FULL_VERSION in it.
 */
export const VERSION_HEADER = "x-banger-version";
