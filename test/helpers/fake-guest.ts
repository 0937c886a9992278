import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ROOT, tempHome } from "./cli.ts";
import { startSSHD, type TestSSHD } from "./sshd.ts";

/**
 * A banger home whose "VM" is a fake-VMM process and whose "guest" is a real
 * OpenSSH sshd on 127.0.0.1 (this host plays the guest): session and
 * workspace paths run for real over SSH without booting anything. Guest
 * state goes to a temp dir instead of /var/lib/banger. Dirs exist at once;
 * start() brings up sshd and the VM.
 */
export function fakeGuestVM(prefix: string, vmName = "box", extraPlugins: string[] = []) {
  const h = tempHome(prefix);
  const guestRoot = mkdtempSync(join(tmpdir(), `${prefix}guest-`));
  const scratch = mkdtempSync(join(tmpdir(), `${prefix}files-`));
  const env: Record<string, string> = {};
  let sshd: TestSSHD | null = null;
  let vmPid = 0;
  const run = (args: string[], input?: string) => h.run(args, env, input);
  return {
    h,
    env,
    run,
    guestRoot,
    scratch,
    get sshd(): TestSSHD {
      if (!sshd) throw new Error("fakeGuestVM: start() first");
      return sshd;
    },
    async start() {
      sshd = await startSSHD();
      Object.assign(env, {
        BANGER_PLUGINS: [join(ROOT, "test/fixtures/fake-vmm-plugin.ts"), join(ROOT, "test/fixtures/fake-guest-plugin.ts"), ...extraPlugins].join(":"),
        BANGER_FAKE_SSH: JSON.stringify({ host: sshd.host, port: sshd.port, clientKey: sshd.clientKey, hostPublicKey: sshd.hostPublicKey }),
        BANGER_GUEST_STATE_ROOT: guestRoot,
      });
      writeFileSync(join(scratch, "k"), "k");
      writeFileSync(join(scratch, "r"), Buffer.alloc(4096));
      const imported = run(["image", "import", "--name", "tiny", "--kernel", join(scratch, "k"), "--rootfs", join(scratch, "r")]);
      if (imported.code !== 0) throw new Error(`image import: ${imported.stderr}`);
      const vm = run(["vm", "create", vmName, "--image", "tiny", "--driver", "fake", "--start", "--json"]);
      if (vm.code !== 0) throw new Error(`vm create: ${vm.stderr}`);
      vmPid = vm.json().pid;
    },
    async cleanup() {
      run(["vm", "delete", vmName, "--force"]);
      // a real VM's processes die with it; this "guest" is the host, so end its sessions (each its own process group) by id
      killSessionGroups(guestRoot);
      await h.cleanup(vmPid ? [vmPid] : []);
      await sshd?.stop();
      Bun.spawnSync(["chmod", "-R", "u+w", guestRoot]); // read-only workspaces
      for (const d of [guestRoot, scratch]) rmSync(d, { recursive: true, force: true });
    },
  };
}

/**
 * SIGKILL the process group of every process whose command line names a path
 * under root (guest sessions run setsid, so each is its own group); never our
 * own group. stat is "pid (comm) state ppid pgrp ...": comm may hold spaces.
 */
export function killSessionGroups(root: string): number[] {
  const pgrpOf = (pid: string) => {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[2]);
  };
  const ours = pgrpOf("self");
  const groups = new Set<number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    try {
      if (!readFileSync(`/proc/${d}/cmdline`, "utf8").includes(root)) continue;
      const pgrp = pgrpOf(d);
      if (pgrp > 1 && pgrp !== ours) groups.add(pgrp);
    } catch {}
  }
  for (const g of groups) {
    try {
      process.kill(-g, "SIGKILL");
    } catch {}
  }
  return [...groups];
}
