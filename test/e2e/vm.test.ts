// The seed's live verification, for real: a Debian guest under QEMU (TCG or KVM, as the probe says).
import { afterAll, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, waitFor, killAndWait } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";
import { expectedAccel } from "../helpers/host-kvm.ts";

const BOOT = 240_000;

e2e.describe("real VM (QEMU)", () => {
  const h = e2eReady ? e2eHome("banger-e2e-vm-") : (null as never);
  const pids: number[] = [];
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "handles-test", "--force"]);
    h.run(["vm", "delete", "crashy", "--force"]);
    await h.cleanup([...pids, ...qemuPidsUnder(h.home)]);
  });

  test("vm run prints the hostname; handles.json holds the qemu pid", () => {
    const r = h.run(["vm", "run", "--vmm", "qemu", "--name", "handles-test", "--", "cat", "/etc/hostname"]);
    expect(r.stderr).toContain("booting handles-test");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("handles-test\n");
    const vm = h.run(["vm", "show", "handles-test", "--json"]).json();
    pids.push(vm.pid);
    const handles = JSON.parse(readFileSync(join(vm.runtime.vmDir, "handles.json"), "utf8"));
    expect(handles.pid).toBe(vm.pid);
    // exactly one storage provider acted, the one the record names; without device-mapper in the kernel it is the copy
    if (/\bdevice-mapper\b/.test(readFileSync("/proc/misc", "utf8"))) expect(["dm", "copy"]).toContain(handles.extra.storage);
    else expect(handles.extra.storage).toBe("copy");
    expect(vm.spec.storage).toBe(handles.extra.storage);
    expect(vm.spec.net).toBe("user");
    const argv = readFileSync(`/proc/${vm.pid}/cmdline`, "utf8").split("\0");
    expect(argv[0]).toContain("qemu-system-x86_64");
    // the daemon's probe picked the accelerator an independent look at the host expects
    expect(argv[argv.indexOf("-accel") + 1]).toStartWith(expectedAccel());
  }, BOOT);

  test("kill -9 the daemon; the next CLI call reconciles the VM as alive and ssh still works", () => {
    const before = h.run(["vm", "show", "handles-test", "--json"]).json();
    killAndWait(h.daemonPid());
    const r = h.run(["vm", "ssh", "handles-test", "--", "uname", "-s"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("Linux\n");
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("reconcile handles-test: kept (handles from process)");
    const after = h.run(["vm", "show", "handles-test", "--json"]).json();
    expect(after.pid).toBe(before.pid);
    expect(after.runtime.state).toBe("running");
  }, 60_000);

  test("exit codes pass through; stdout and stderr stay apart; hostile args arrive intact", () => {
    expect(h.run(["vm", "exec", "handles-test", "--", "false"]).code).toBe(1);
    const nf = h.run(["vm", "exec", "handles-test", "--", "no-such-command"]);
    expect(nf.code).toBe(127);
    const io = h.run(["vm", "exec", "handles-test", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    expect(io.code).toBe(7);
    expect(io.stdout).toBe("out\n");
    expect(io.stderr).toBe("err\n");
    const hostile = ["it's", "a; rm -rf /tmp/nope", "$(touch /tmp/pwned)", "two\nlines", "`id`", " spaced "];
    const echo = h.run(["vm", "exec", "handles-test", "--", "printf", "%s|", ...hostile]);
    expect(echo.stdout).toBe(hostile.join("|") + "|");
    expect(h.run(["vm", "exec", "handles-test", "--", "test", "!", "-e", "/tmp/pwned"]).code).toBe(0);
  }, 60_000);

  test("the VM process killed -9 while the daemon is down: demoted to stopped, cleaned at next start, starts again", async () => {
    const created = h.run(["vm", "create", "crashy", "--vmm", "qemu", "--start", "--json"]);
    expect(created.code).toBe(0);
    const vm = created.json();
    killAndWait(h.daemonPid());
    process.kill(vm.pid, "SIGKILL");
    await waitFor(() => !alive(vm.pid));
    const after = h.run(["vm", "show", "crashy", "--json"]).json();
    expect(after.runtime.state).toBe("stopped");
    expect(after.alive).toBe(false);
    expect(existsSync(join(vm.runtime.vmDir, "handles.json"))).toBe(false);
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("reconcile crashy: demoted");
    const again = h.run(["vm", "start", "crashy", "--json"]);
    expect(again.code).toBe(0);
    expect(h.run(["vm", "exec", "crashy", "--", "cat", "/etc/hostname"]).stdout).toBe("crashy\n");
    expect(h.run(["vm", "delete", "crashy"]).code).toBe(0);
  }, 2 * BOOT);

  test("the guest host key is pinned: SSH to a VM with a swapped key is refused (a plain exec goes over the exec agent, whose port is the VM's own)", () => {
    const vm = h.run(["vm", "show", "handles-test", "--json"]).json();
    const pub = join(vm.runtime.vmDir, "keys", "host_ed25519.pub");
    const real = readFileSync(pub, "utf8");
    // any other valid ed25519 key
    const other = Bun.spawnSync(["bash", "-c", `d=$(mktemp -d); ssh-keygen -q -t ed25519 -N '' -f $d/k; cat $d/k.pub; rm -rf $d`]).stdout.toString();
    Bun.write(pub, other);
    try {
      h.run(["daemon", "stop"]); // drop the pooled connection
      // an upload is a stdin stream: it goes over SSH
      const file = join(h.home, "to-copy.txt");
      writeFileSync(file, "x");
      const r = h.run(["vm", "cp", file, "handles-test:/tmp/"]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/host key/i);
    } finally {
      Bun.write(pub, real);
    }
  }, 60_000);

  test("vm delete leaves no qemu process, no VMDir, no row", async () => {
    const vm = h.run(["vm", "show", "handles-test", "--json"]).json();
    const d = h.run(["vm", "delete", "handles-test"]);
    expect(d.code).toBe(0);
    expect(await waitFor(() => !alive(vm.pid), 10_000)).toBe(true);
    expect(existsSync(vm.runtime.vmDir)).toBe(false);
    expect(h.run(["vm", "show", "handles-test"]).code).toBe(1);
    expect(qemuPidsUnder(h.home)).toEqual([]);
  }, 60_000);

  test("vm run --rm: exit code through, nothing left", () => {
    const r = h.run(["vm", "run", "--vmm", "qemu", "--name", "oneshot", "--rm", "--", "sh", "-c", "exit 3"]);
    expect(r.code).toBe(3);
    expect(h.run(["vm", "list", "--json"]).json()).toEqual([]);
    expect(qemuPidsUnder(h.home)).toEqual([]);
  }, BOOT);
});
