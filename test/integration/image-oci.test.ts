// image import --oci through dist/banger, without a VM: OCI layouts and a
// docker save archive made here from local files (test/helpers/oci.ts),
// layers applied by umoci (a whiteout removes a file), banger's boot pieces
// under /.banger, root's login shell and the image's env/workdir; the bad
// inputs. The rootfs is read back with debugfs.
import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import EXEC_AGENT_PL from "../../plugins/image/exec-agent.pl" with { type: "text" };
import { tempHome } from "../helpers/cli.ts";
import { BUSYBOX, BUSYBOX_CONFIG, busyboxLayers, writeDockerArchive, writeOciLayout } from "../helpers/oci.ts";
import { firstMissing, IS_ROOT, needs } from "../helpers/skip.ts";

const which = (c: string) => Bun.spawnSync(["sh", "-c", `command -v ${c}`]).exitCode === 0;

const why = firstMissing(
  [IS_ROOT, "needs root (umoci keeps owners; mkfs -d)"],
  [!!BUSYBOX, "needs busybox-static"],
  [which("umoci") && which("skopeo") && which("patchelf"), "needs umoci, skopeo and patchelf (scripts/host-deps.sh)"],
);
const { describe, test } = needs(!why, why);

describe("image import --oci (no VM)", () => {
  const h = !why ? tempHome("banger-oci-") : (null as never);
  const work = h ? `${h.home}-oci` : "";
  const cat = (image: string, path: string) =>
    Bun.spawnSync(["debugfs", "-R", `cat "${path}"`, join(h.home, "images", image, "rootfs.ext4")]).stdout.toString();
  const leftovers = () => readdirSync(join(h.home, "images")).filter((n) => n.startsWith("."));

  beforeAll(() => {
    mkdirSync(work, { recursive: true });
    writeFileSync(join(work, "vmlinuz"), "kernel stand-in");
    writeFileSync(join(work, "initrd.img"), "initrd stand-in");
    // the base's rootfs holds its kernel's modules, as a built image's does
    mkdirSync(join(work, "base-root/usr/lib/modules/6.1.0-test/kernel"), { recursive: true });
    writeFileSync(join(work, "base-root/usr/lib/modules/6.1.0-test/modules.dep"), "kernel/x.ko:\n");
    Bun.spawnSync(["truncate", "-s", "8M", join(work, "root.ext4")]);
    Bun.spawnSync(["mkfs.ext4", "-q", "-F", "-d", join(work, "base-root"), join(work, "root.ext4")]);
    const r = h.run(["image", "import", "--name", "default", "--kernel", join(work, "vmlinuz"), "--rootfs", join(work, "root.ext4"), "--initrd", join(work, "initrd.img")]);
    if (r.code !== 0) throw new Error(r.stderr);
  });
  afterAll(async () => {
    if (!h) return;
    await h.cleanup();
    Bun.spawnSync(["rm", "-rf", work]);
  });

  test("an OCI layout: layers in order with the whiteout, /.banger added, root logs in through the env/workdir shell", () => {
    const layers = busyboxLayers(join(work, "bb"));
    writeOciLayout(join(work, "bb-layout"), layers, BUSYBOX_CONFIG);
    const r = h.run(["image", "import", "bb", "--oci", join(work, "bb-layout"), "--json"]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    const img = r.json();
    expect(img.source).toBe("oci");
    expect(img.manifest.init).toBe("/.banger/init");
    expect(img.manifest.oci.workdir).toBe("/srv/app");
    expect(cat("bb", "/srv/app/hello")).toBe("layer two\n");
    expect(cat("bb", "/etc/gone")).toBe("");
    expect(cat("bb", "/etc/passwd")).toBe("root:x:0:0:root:/root:/.banger/shell\n");
    expect(cat("bb", "/etc/shells")).toContain("/.banger/shell\n");
    expect(cat("bb", "/.banger/init")).toStartWith("#!/.banger/bin/bash\n");
    // the exec agent among banger's pieces, where the OCI init looks for it (busybox has no perl: init.sh starts none here)
    expect(cat("bb", "/.banger/init")).toContain("\nEXEC_AGENT=/.banger/exec-agent.pl\n");
    expect(cat("bb", "/.banger/exec-agent.pl")).toBe(EXEC_AGENT_PL);
    expect(cat("bb", "/.banger/env")).toBe("export PATH='/bin'\nexport GREETING='it'\\''s $(not) run'\nexport PATH=\"${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}:/.banger/bin\"\nBANGER_WORKDIR='/srv/app'\n");
    // the carried programs load through our loader, whatever libc the image has (none here)
    const interp = Bun.spawnSync(["sh", "-c", `debugfs -R 'dump /.banger/bin/dropbear ${work}/db' ${join(h.home, "images/bb/rootfs.ext4")} && patchelf --print-interpreter ${work}/db`]);
    expect(interp.stdout.toString().trim()).toBe("/.banger/lib/ld-linux-x86-64.so.2");
    expect(existsSync(join(h.home, "images/bb/initrd.img"))).toBe(true);
    expect(cat("bb", "/lib/modules/6.1.0-test/modules.dep")).toBe("kernel/x.ko:\n");
    expect(leftovers()).toEqual([]);
  }, 120_000);

  test("an image built on an OCI import keeps its init and defaults: it boots through /.banger as its base does", () => {
    const r = h.run(["image", "build", "bb-plus", "--from", "bb", "--run", "echo added > /srv/app/added", "--json"]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    const img = r.json();
    expect(img.source).toBe("derived");
    expect([img.manifest.init, img.manifest.oci.workdir, img.manifest.rootSource]).toEqual(["/.banger/init", "/srv/app", "oci"]);
    expect(cat("bb-plus", "/srv/app/added")).toBe("added\n");
  }, 120_000);

  test("a docker save archive imports too; its config's env and workdir are kept", () => {
    const layers = busyboxLayers(join(work, "bb2"));
    writeDockerArchive(join(work, "bb.tar"), join(work, "bb-docker"), layers, { ...BUSYBOX_CONFIG, WorkingDir: "/srv" });
    const r = h.run(["image", "import", "bbd", "--oci", join(work, "bb.tar"), "--json"]);
    expect(r.stderr).not.toContain("banger:");
    expect(r.code).toBe(0);
    expect(r.json().manifest.oci.format).toBe("docker-archive");
    expect(cat("bbd", "/.banger/env")).toContain("BANGER_WORKDIR='/srv'");
    expect(cat("bbd", "/etc/gone")).toBe("");
  }, 120_000);

  test("bad input: one line each, exit 1 or 2, nothing left", () => {
    writeFileSync(join(work, "corrupt.tar"), "this is not a tar archive at all\n".repeat(40));
    mkdirSync(join(work, "plain-dir"), { recursive: true });
    Bun.spawnSync(["tar", "-C", join(work, "plain-dir"), "-cf", join(work, "other.tar"), "."]);
    const truncated = join(work, "truncated-layout");
    Bun.spawnSync(["cp", "-a", join(work, "bb-layout"), truncated]);
    // a layer blob cut short: its digest no longer matches
    const blobs = join(truncated, "blobs/sha256");
    const biggest = readdirSync(blobs).map((b) => join(blobs, b)).sort((a, b) => readFileSync(b).length - readFileSync(a).length)[0]!;
    writeFileSync(biggest, readFileSync(biggest).subarray(0, 1000));
    const cases: [string[], number, string][] = [
      [["image", "import", "x1", "--oci", join(work, "corrupt.tar")], 2, "not a tar archive"],
      [["image", "import", "x2", "--oci", join(work, "other.tar")], 2, "not an OCI image layout or a docker save archive"],
      [["image", "import", "x3", "--oci", join(work, "plain-dir")], 2, "is not an OCI image layout"],
      [["image", "import", "x4", "--oci", join(work, "no-such")], 2, "OCI input not found"],
      [["image", "import", "x5", "--oci", truncated], 2, "skopeo: cannot read the image"],
      [["image", "import", "bb", "--oci", join(work, "bb-layout")], 1, "image already exists: bb"],
      [["image", "import", "x6", "--oci", join(work, "bb-layout"), "--base", "nope"], 1, "image not found: nope"],
      [["image", "import", "x7", "--oci", join(work, "bb-layout"), "--kernel", join(work, "vmlinuz")], 2, "--oci takes its kernel and initrd from --base (default: default): drop --kernel"],
      [["image", "warm", "bb", "--cpus", "0"], 2, "--cpus must be a whole number (1 or more), got \"0\""],
    ];
    for (const [args, code, msg] of cases) {
      const r = h.run(args);
      const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("banger:"));
      expect({ args, code: r.code, lines: lines.length }).toEqual({ args, code, lines: 1 });
      expect(lines[0]).toContain(msg);
    }
    expect(leftovers()).toEqual([]);
  }, 120_000);
});
