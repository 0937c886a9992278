// Images of your own, booted for real: a derived image with packages and a
// step (built in a chroot with the host's apt), the cache hit, apt's own
// line for an unknown package; `vm commit` of a VM with a file written;
// apt itself in the guest (when the image under test has it).
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

const BOOT = 240_000;

e2e.describe("images of your own (QEMU)", () => {
  const h = e2eReady ? e2eHome("banger-e2e-image-") : (null as never);
  afterAll(async () => {
    if (!h) return;
    for (const vm of ["tools-vm", "snap-vm", "apt-vm"]) h.run(["vm", "delete", vm, "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });
  const build = ["image", "build", "tools", "--from", "default", "--packages", "jq,make", "--run", "echo built > /etc/tools-stamp"];

  test("image build tools --from default --packages jq,make --run …: a VM of it has jq, make and the stamp", () => {
    const b = h.run([...build, "--json"]);
    expect(b.stderr).not.toContain("banger:");
    expect(b.code).toBe(0);
    expect(b.json().built).toBe(true);
    const r = h.run(["vm", "run", "--vmm", "qemu", "--image", "tools", "--name", "tools-vm", "--", "sh", "-c", "jq --version && make --version | head -1 && cat /etc/tools-stamp"]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^jq-1\.\d[^\n]*\nGNU Make \d[^\n]*\nbuilt\n$/);
  }, BOOT);

  test("the same build again is a cache hit (≤ 1 s); image show prints the chain", () => {
    const t0 = performance.now();
    const again = h.run([...build, "--json"]);
    const ms = performance.now() - t0;
    expect(again.code).toBe(0);
    expect(again.json().built).toBe(false);
    expect(ms).toBeLessThan(1000);
    const show = h.run(["image", "show", "tools"]);
    expect(show.stdout).toContain("chain: default → tools");
    expect(show.stdout).toContain("packages: jq, make");
    expect(show.stdout).toContain("run: echo built > /etc/tools-stamp");
  }, 30_000);

  test("an unknown package: apt's own line, exit 2, nothing left", () => {
    const r = h.run(["image", "build", "nope", "--from", "default", "--packages", "jq,no-such-package-x"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("E: Unable to locate package no-such-package-x");
    expect(r.stderr.split("\n").filter((l) => l.startsWith("banger:"))).toHaveLength(1);
    expect(readdirSync(join(h.home, "images")).sort()).toEqual(["default", "tools"]);
  }, 60_000);

  /** A file's content in an image's rootfs, read on the host with debugfs ("" when absent). */
  const cat = (image: string, path: string) =>
    Bun.spawnSync(["debugfs", "-R", `cat "${path}"`, join(h.home, "images", image, "rootfs.ext4")]).stdout.toString();

  test("vm commit: a new VM from the image has the file, its own host key, no trace of the old VM's keys or history", () => {
    const w = h.run(["vm", "exec", "tools-vm", "--", "sh", "-c", "echo kept > /root/committed && echo 'secret cmd' > /root/.bash_history && sha256sum < /run/banger-seed/dropbear_ed25519_host_key"]);
    expect(w.code).toBe(0);
    // a session's state holds its command and -e values: it stays with the VM
    expect(h.run(["session", "start", "tools-vm", "--name", "with-secret", "-e", "API_TOKEN=hunter2", "--", "true"]).code).toBe(0);
    const oldKey = w.stdout.trim();
    const running = h.run(["vm", "commit", "tools-vm", "snap"]);
    expect(running.code).toBe(1);
    expect(running.stderr).toContain("is running: stop it first");
    expect(h.run(["vm", "stop", "tools-vm"]).code).toBe(0);
    const c = h.run(["vm", "commit", "tools-vm", "snap", "--json"]);
    expect(c.stderr).not.toContain("banger:");
    expect(c.code).toBe(0);
    expect(c.json().source).toBe("committed");
    expect(cat("snap", "/root/committed")).toBe("kept\n");
    expect(cat("snap", "/root/.bash_history")).toBe("");
    expect(cat("snap", "/root/.ssh/authorized_keys")).toBe("");
    expect(cat("snap", "/etc/hostname")).toBe("banger\n");
    expect(Bun.spawnSync(["debugfs", "-R", "ls /var/lib/banger", join(h.home, "images", "snap", "rootfs.ext4")]).stdout.toString()).not.toContain("sessions");
    expect(cat("snap", "/usr/bin/jq")).not.toBe(""); // the packages of its image came along
    expect(h.run(["vm", "commit", "tools-vm", "snap"]).stderr).toContain("image already exists: snap");
    const r = h.run(["vm", "run", "--vmm", "qemu", "--image", "snap", "--name", "snap-vm", "--", "sh", "-c", "cat /root/committed /etc/hostname && sha256sum < /run/banger-seed/dropbear_ed25519_host_key"]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    const [file, host, key] = r.stdout.trim().split("\n");
    expect(file).toBe("kept");
    expect(host).toBe("snap-vm");
    expect(key).not.toBe(oldKey);
    expect(h.run(["vm", "stop", "snap-vm"]).code).toBe(0);
    expect(readdirSync(join(h.home, "images")).filter((n) => n.startsWith("."))).toEqual([]);
  }, BOOT);

  const hasApt = existsSync(join(h?.home ?? "/nonexistent", "images/default/rootfs.ext4")) && cat("default", "/usr/bin/apt-get") !== "";
  (hasApt ? test : test.skip)("apt in the default image installs local .debs offline (the image under test has apt)", () => {
    // three .debs from the host's apt (jq and its libraries), copied in by a derived image; apt-get installs them with no network
    const debs = `${h.home}-debs`;
    Bun.spawnSync(["mkdir", "-p", debs]);
    const dl = Bun.spawnSync(["apt-get", "download", "jq", "libjq1", "libonig5"], { cwd: debs });
    expect(dl.exitCode).toBe(0);
    expect(h.run(["image", "build", "with-debs", "--from", "default", "--copy", `${debs}:/root/debs`]).code).toBe(0);
    const r = h.run(["vm", "run", "--vmm", "qemu", "--image", "with-debs", "--name", "apt-vm", "--", "sh", "-c", "apt-get install -y -q /root/debs/*.deb >/dev/null 2>&1; jq --version"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith("jq-1.");
    Bun.spawnSync(["rm", "-rf", debs]);
  }, BOOT);
});
