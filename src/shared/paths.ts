
/** Where banger keeps its state: what a plugin may know of it. */
export interface BangerPaths {
  home: string;
  imagesDir: string;
  vmsDir: string;
}

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

export interface DaemonPaths extends BangerPaths {
  db: string;
  socket: string;
  lock: string;
  pidFile: string;
  log: string;
  configJson: string;
  configTs: string;
  pluginsDir: string;
}

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

export function daemonPaths(home: string): DaemonPaths {
  return {
    home,
    imagesDir: join(home, "images"),
    vmsDir: join(home, "vms"),
    db: join(home, "banger.db"),
    socket: daemonSocket(home),
    lock: join(home, "daemon.lock"),
    pidFile: join(home, "daemon.pid"),
    log: join(home, "daemon.log"),
    configJson: join(home, "config.json"),
    configTs: join(home, "banger.config.ts"),
    pluginsDir: join(home, "plugins"),
  };
}

/** Deterministic per-VM paths, derived from VMDir. */
export function vmPaths(vmDir: string) {
  return {
    handles: join(vmDir, "handles.json"),
    apiSock: join(vmDir, "api.sock"),
    serialLog: join(vmDir, "serial.log"),
    systemDisk: join(vmDir, "system.img"),
    workDisk: join(vmDir, "work.img"),
    keysDir: join(vmDir, "keys"),
    /** The client key banger logs in with (OpenSSH ed25519). */
    clientKey: join(vmDir, "keys", "id_ed25519"),
    /** The guest's host key (dropbear format), delivered by the seed. */
    hostKey: join(vmDir, "keys", "host_ed25519_dropbear"),
    /** Its public line, pinned by every client: no trust on first use. */
    hostPubKey: join(vmDir, "keys", "host_ed25519.pub"),
  };
}
