// Images of your own, booted for real: a derived image with packages and a
// step (built in a chroot with the host's apt), the cache hit, apt's own
// line for an unknown package.
import { afterAll, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

const BOOT = 240_000;

e2e.describe("images of your own (QEMU)", () => {
  const h = e2eReady ? e2eHome("banger-e2e-image-") : (null as never);
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "tools-vm", "--force"]);
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
});
