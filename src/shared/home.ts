/**
 * Where this user's daemon listens, from the environment alone: what the
 * CLI's early read (src/client/early.ts) computes before it sends. Apart
 * from ./paths.ts (daemonPaths, vmPaths…, which re-exports these) because
 * every command loads this file first, and each function a loaded module
 * holds costs start-up whether or not it runs (P1 in bench/results.md).
 */

/**
 * node:path's posix join, without loading node:path and node:os: every
 * command computes the socket path, and those two modules cost a compiled
 * `banger vm list` ~0.4 ms of start-up (test/unit/paths.test.ts holds it
 * to node:path's answers).
 */
export function joinPath(...parts: string[]): string {
  const joined = parts.filter((p) => p.length > 0).join("/");
  if (!joined) return ".";
  const absolute = joined.startsWith("/");
  const out: string[] = [];
  for (const seg of joined.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (out.length && out[out.length - 1] !== "..") out.pop();
      else if (!absolute) out.push("..");
    } else out.push(seg);
  }
  const body = out.join("/");
  const trailing = joined.endsWith("/") && body ? "/" : "";
  return (absolute ? "/" + body : body || ".") + trailing;
}

const join = joinPath;

/** $BANGER_HOME from an environment (src/host/config.ts `environ()` for this process's). */
export function resolveHome(env: Readonly<Record<string, string | undefined>>): string {
  if (env.BANGER_HOME) return env.BANGER_HOME;
  const state = env.XDG_STATE_HOME || join(env.HOME || (require("node:os") as typeof import("node:os")).homedir(), ".local", "state");
  return join(state, "banger");
}

/**
 * The daemon's socket in this home, alone: the CLI's early read needs no
 * other path (daemonPaths builds eleven). A home that needs no normalizing
 * skips join's array work, which a compiled `vm list` pays for on its first
 * call (test/unit/paths.test.ts holds it to join's answer).
 */
export function daemonSocket(home: string): string {
  const clean = home.startsWith("/") && !home.endsWith("/") && !home.endsWith("/.") && !home.endsWith("/..") && !home.includes("//") && !home.includes("/./") && !home.includes("/../");
  return clean ? `${home}/bangerd.sock` : join(home, "bangerd.sock");
}
