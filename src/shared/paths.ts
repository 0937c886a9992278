import { daemonSocket, joinPath } from "./home.ts";

export { daemonSocket, joinPath, resolveHome } from "./home.ts";

/** Where banger keeps its state: what a plugin may know of it. */
export interface BangerPaths {
  home: string;
  imagesDir: string;
  vmsDir: string;
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
    /**
     * The guest agent's channel, where the VMM gives one (QEMU: a virtio-serial port named banger.agent on a pipe
     * chardev): the host writes `${agentPipe}.in`, reads `${agentPipe}.out`. See plugins/guest/agent.ts.
     */
    agentPipe: join(vmDir, "agent"),
    /** The exec agent's channel (QEMU: the port banger.exec), likewise. See plugins/guest/exec-agent.ts. */
    execPipe: join(vmDir, "exec"),
  };
}
