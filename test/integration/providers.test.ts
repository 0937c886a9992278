// dist/banger for real with a user's storage provider (test/fixtures/fake-storage-plugin.ts)
// next to the built-ins: a VM that asks for it gets it and only it, `vm show`
// says so, and after kill -9 of the daemon and the VM the next daemon's
// reconcile and the delete still reach it. "VMs" are node processes (fake-vmm-plugin.ts).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alive, BANGER, ROOT, tempHome, waitFor, killAndWait } from "../helpers/cli.ts";

const pluginDir = mkdtempSync(join(tmpdir(), "banger-provider-plugin-"));
for (const f of ["fake-vmm-plugin.ts", "fake-vm.mjs", "fake-storage-plugin.ts"]) copyFileSync(join(ROOT, "test/fixtures", f), join(pluginDir, f));
const PLUGINS = `${join(pluginDir, "fake-vmm-plugin.ts")}:${join(pluginDir, "fake-storage-plugin.ts")}`;
const kernel = join(pluginDir, "vmlinuz");
const rootfs = join(pluginDir, "rootfs.ext4");
writeFileSync(kernel, "not a kernel");
writeFileSync(rootfs, Buffer.alloc(1 << 20));

const h = tempHome("banger-providers-");
const vmPids: number[] = [];
const run = (args: string[]) => h.run(args, { BANGER_PLUGINS: PLUGINS });
const events = () =>
  existsSync(join(h.home, "fake-storage.log"))
    ? readFileSync(join(h.home, "fake-storage.log"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { ev: string; vm: string; fakeDisk?: string })
    : [];

interface VMView {
  name: string;
  alive: boolean;
  pid: number;
  spec: { storage: string; net: string; driver: string };
  runtime: { state: string; vmDir: string; systemOverlay: string };
}

beforeAll(() => {
  expect(existsSync(BANGER)).toBe(true);
  expect(run(["image", "import", "--name", "tiny", "--kernel", kernel, "--rootfs", rootfs, "--json"]).code).toBe(0);
});
afterAll(async () => {
  await h.cleanup(vmPids);
  rmSync(pluginDir, { recursive: true, force: true });
});

describe("a user's storage provider next to the built-ins", () => {
  test("plugin list shows who provides what", () => {
    const r = run(["plugin", "list", "--json"]);
    expect(r.code).toBe(0);
    const by = Object.fromEntries(r.json<{ name: string; storage: string[]; nets: string[] }[]>().map((p) => [p.name, p]));
    expect([by["storage-dm"]!.storage, by.storage!.storage, by["fake-storage"]!.storage]).toEqual([["dm"], ["copy"], ["fake-storage"]]);
    expect([by["net-user"]!.nets, by["net-tap"]!.nets, by["fake-vmm"]!.nets]).toEqual([["user"], ["tap"], ["fake-net"]]);
    expect(run(["plugin", "list"]).stdout).toContain("storage: fake-storage");
  });

  test("--storage fake-storage: its disk, not a copy; vm show (human and --json) names it", () => {
    const r = run(["vm", "create", "mine", "--image", "tiny", "--driver", "fake", "--storage", "fake-storage", "--start", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const v = r.json<VMView>();
    vmPids.push(v.pid);
    expect([v.spec.storage, v.spec.net, v.runtime.systemOverlay]).toEqual(["fake-storage", "fake-net", join(v.runtime.vmDir, "fake-disk.img")]);
    expect(existsSync(join(v.runtime.vmDir, "system.img")) || existsSync(join(v.runtime.vmDir, "system.cow"))).toBe(false);
    expect(run(["vm", "show", "mine", "--json"]).json<VMView>().spec.storage).toBe("fake-storage");
    expect(run(["vm", "show", "mine"]).stdout).toContain("storage:   fake-storage\n");
    expect(events().map((e) => e.ev)).toEqual(["create", "attach"]);
  });

  test("no --storage: a built-in makes the disk and the user's provider does nothing", () => {
    const r = run(["vm", "create", "plain", "--image", "tiny", "--driver", "fake", "--json"]);
    expect(r.code).toBe(0);
    const v = r.json<VMView>();
    expect(["dm", "copy"]).toContain(v.spec.storage);
    expect(events().some((e) => e.vm === "plain")).toBe(false);
    expect(run(["vm", "delete", "plain"]).code).toBe(0);
  });

  test("an unknown --storage or --net: one line, exit 2, naming the loaded ones", () => {
    const s = run(["vm", "create", "nope", "--image", "tiny", "--driver", "fake", "--storage", "zfs"]);
    expect([s.code, s.stderr]).toEqual([2, 'banger: unknown storage "zfs" (known: dm, copy, fake-storage)\n']);
    const n = run(["vm", "create", "nope", "--image", "tiny", "--driver", "fake", "--net", "bridge"]);
    expect([n.code, n.stderr]).toEqual([2, 'banger: unknown network mode "bridge" (known: user, tap, fake-net)\n']);
    const u = run(["vm", "create", "nope", "--image", "tiny", "--driver", "fake", "--net", "user"]);
    expect([u.code, u.stderr]).toEqual([2, "banger: fake cannot use --net user (it supports: tap, fake-net)\n"]);
    expect(run(["vm", "show", "nope"]).code).not.toBe(0);
  });

  test("kill -9 of the daemon and the VM: the next daemon's reconcile cleans up through the recorded provider, and delete reaches it", async () => {
    const v = run(["vm", "show", "mine", "--json"]).json<VMView>();
    killAndWait(h.daemonPid());
    process.kill(v.pid, "SIGKILL");
    await waitFor(() => !alive(v.pid));
    const after = run(["vm", "show", "mine", "--json"]).json<VMView>();
    expect(after.runtime.state).toBe("stopped");
    expect(events().filter((e) => e.ev === "cleanup")).toEqual([{ ev: "cleanup", vm: "mine", fakeDisk: "attached" }]);
    expect(run(["vm", "delete", "mine"]).code).toBe(0);
    expect(events().at(-1)).toEqual({ ev: "delete", vm: "mine" });
  });
});
