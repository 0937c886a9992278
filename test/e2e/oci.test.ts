// OCI images booted for real: a busybox-only one (no libc, no SSH server of
// its own) as a `docker save` archive, and a Debian-based one (the test
// image's files, banger's init taken out, a user, a workdir and env) as an
// OCI layout; both answer `vm exec` with the image's env and workdir (and
// the Debian one as its user).
import { afterAll, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { e2e, e2eHome, e2eReady, IMAGE_DIR, qemuPidsUnder } from "../helpers/e2e.ts";
import { BUSYBOX_CONFIG, busyboxLayers, layerTar, writeDockerArchive, writeOciLayout } from "../helpers/oci.ts";

const BOOT = 240_000;

e2e.describe("OCI images (QEMU)", () => {
  const h = e2eReady ? e2eHome("banger-e2e-oci-") : (null as never);
  const work = h ? `${h.home}-oci` : "";
  const mnt = join(work, "mnt");
  afterAll(async () => {
    if (!h) return;
    for (const vm of ["bb-vm", "deb-vm"]) h.run(["vm", "delete", vm, "--force"]);
    Bun.spawnSync(["umount", mnt]);
    await h.cleanup(qemuPidsUnder(h.home));
    Bun.spawnSync(["rm", "-rf", "--one-file-system", work]);
  });

  test("busybox-only image (docker save archive): boots, vm exec runs in its workdir with its env", () => {
    mkdirSync(work, { recursive: true });
    writeDockerArchive(join(work, "bb.tar"), join(work, "bb-docker"), busyboxLayers(join(work, "bb")), BUSYBOX_CONFIG);
    const imp = h.run(["image", "import", "bb", "--oci", join(work, "bb.tar")]);
    expect(imp.stderr).not.toContain("banger:");
    expect(imp.code).toBe(0);
    const r = h.run(["vm", "run", "--vmm", "qemu", "--image", "bb", "--name", "bb-vm", "--", "sh", "-c", 'pwd; echo "$GREETING"; cat hello; cat /etc/gone 2>/dev/null || echo gone']);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("/srv/app\nit's $(not) run\nlayer two\ngone\n");
    const e = h.run(["vm", "exec", "bb-vm", "--", "sh", "-c", "id -u; echo $PATH; test -s /lib/modules/$(uname -r)/modules.dep && echo modules"]);
    expect(e.code).toBe(0);
    expect(e.stdout).toBe("0\n/bin:/.banger/bin\nmodules\n");
    // sessions run under bash with mkfifo/setsid/nohup: the image has none of them, /.banger/bin does
    const s = h.run(["session", "start", "bb-vm", "--name", "s1", "--stdin", "closed", "--json", "--", "sh", "-c", "pwd; echo from-session"]);
    expect(s.stderr).not.toContain("banger:");
    expect(s.code).toBe(0);
    let out = "";
    for (let i = 0; i < 50 && !out.includes("from-session"); i++) {
      out = h.run(["session", "logs", "bb-vm", "s1", "--offset", "0", "--json"]).json<{ data: string }>().data;
      if (!out.includes("from-session")) Bun.sleepSync(200);
    }
    // (a session's cwd is its own --cwd, / by default: the image's workdir is vm exec's default only)
    expect(out).toBe("/\nfrom-session\n");
  }, BOOT);

  test("vm commit of a VM of that image: the new image boots through its /.banger init, with the workdir and env", () => {
    expect(h.run(["vm", "exec", "bb-vm", "--", "sh", "-c", "echo kept > committed"]).code).toBe(0);
    expect(h.run(["vm", "stop", "bb-vm"]).code).toBe(0);
    const c = h.run(["vm", "commit", "bb-vm", "bb-committed", "--json"]);
    expect(c.stderr).not.toContain("banger:");
    expect(c.code).toBe(0);
    const r = h.run(["vm", "run", "--vmm", "qemu", "--image", "bb-committed", "--rm", "--", "sh", "-c", 'pwd; echo "$GREETING"; cat committed']);
    expect(r.stderr).not.toContain("banger:");
    expect([r.code, r.stdout]).toEqual([0, "/srv/app\nit's $(not) run\nkept\n"]);
  }, BOOT);

  test("Debian-based image (OCI layout) with a user, a workdir and env: boots, vm exec sees them", () => {
    // the test image's files, read-only from a sparse copy, without banger's init
    const copy = join(work, "deb.ext4");
    expect(Bun.spawnSync(["cp", "--sparse=always", join(IMAGE_DIR, "rootfs.ext4"), copy]).exitCode).toBe(0);
    mkdirSync(mnt, { recursive: true });
    expect(Bun.spawnSync(["mount", "-o", "loop,ro,noload", copy, mnt]).exitCode).toBe(0);
    const extra = join(work, "deb-extra");
    mkdirSync(join(extra, "home/app/project"), { recursive: true });
    mkdirSync(join(extra, "etc"), { recursive: true });
    writeFileSync(join(extra, "home/app/project/README"), "app's project\n");
    expect(Bun.spawnSync(["tar", "--numeric-owner", "-C", mnt, "--exclude=./usr/sbin/banger-init", "-cf", join(work, "deb1.tar"), "."]).exitCode).toBe(0);
    const passwd = Bun.spawnSync(["cat", join(mnt, "etc/passwd")]).stdout.toString() + "app:x:1000:1000:app:/home/app:/bin/bash\n";
    writeFileSync(join(extra, "etc/passwd"), passwd);
    appendFileSync(join(extra, "etc/group"), Bun.spawnSync(["cat", join(mnt, "etc/group")]).stdout.toString() + "app:x:1000:\n");
    Bun.spawnSync(["umount", mnt]);
    const l1 = new Uint8Array(readFileSync(join(work, "deb1.tar")));
    writeOciLayout(join(work, "deb-layout"), [l1, layerTar(extra, join(work, "deb2.tar"))], {
      Env: ["PATH=/usr/local/bin:/usr/bin:/bin", "APP_MODE=test"],
      WorkingDir: "/home/app/project",
      User: "app",
    });
    const imp = h.run(["image", "import", "deb", "--oci", join(work, "deb-layout")]);
    expect(imp.stderr).not.toContain("banger:");
    expect(imp.code).toBe(0);
    // the image's User is the default user, in its WorkingDir with its Env (HOME is the user's)
    const r = h.run(["vm", "run", "--vmm", "qemu", "--image", "deb", "--name", "deb-vm", "--", "sh", "-c", 'id -un; pwd; echo "$APP_MODE $HOME"; cat README; git --version | cut -d" " -f1-2']);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("app\n/home/app/project\ntest /home/app\napp's project\ngit version\n");
    // -u root overrides it; sessions default to it too
    const root = h.run(["vm", "exec", "deb-vm", "-u", "root", "--", "sh", "-c", "id -un; pwd"]);
    expect([root.code, root.stdout, root.stderr]).toEqual([0, "root\n/home/app/project\n", ""]);
    expect(h.run(["session", "start", "deb-vm", "--name", "who", "--", "id", "-un"]).code).toBe(0);
    const logs = h.run(["session", "logs", "deb-vm", "who", "-f"]);
    expect([logs.code, logs.stdout]).toEqual([0, "app\n"]);
  }, BOOT);
});
