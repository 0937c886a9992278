import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { definePlugin, type BangerPlugin } from "../../src/core/plugin.ts";
import type { StorageProvider } from "../../src/core/providers.ts";
import { writeHandlesFile } from "../../src/handles/file.ts";
import { emptyHandles } from "../../src/shared/model.ts";
import storage from "../../plugins/storage/index.ts";
import { createStorageDmPlugin } from "../../plugins/storage-dm/index.ts";
import { createNetUserPlugin } from "../../plugins/net-user/index.ts";
import { createNetTapPlugin } from "../../plugins/net-tap/index.ts";
import { caught, engineWorld, sampleVM, type TestStore } from "../helpers/fakes.ts";

const PATHS = { home: "/state", imagesDir: "/state/images", vmsDir: "/state/vms" };

const stores: TestStore[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.cleanup();
});

/** What a user's providers did, in order: `<provider> <hook> <vm>`. */
type Events = string[];

/** A user's plugin with its own storage ("fake-storage") and network ("fake-net", for the fake VMM) providers. */
function userPlugin(events: Events, o: { priority?: StorageProvider["priority"] } = {}): BangerPlugin {
  return definePlugin({
    name: "mine",
    setup(ctx) {
      const disks = ctx.registerStorage({ name: "fake-storage", priority: o.priority });
      disks.hook("vm:create", ({ vm }) => {
        events.push(`fake-storage vm:create ${vm.name}`);
        vm.runtime.systemOverlay = join(vm.runtime.vmDir, "fake.img");
      });
      disks.hook("vm:start:before", ({ vm, boot, handles }) => {
        events.push(`fake-storage vm:start:before ${vm.name}`);
        handles.extra.fakeDisk = "attached";
        boot.disks.push({ path: vm.runtime.systemOverlay, format: "raw" });
      });
      disks.hook("vm:cleanup", ({ vm, handles }) => void events.push(`fake-storage vm:cleanup ${vm.name} ${handles.extra.fakeDisk ?? "-"}`));
      disks.hook("vm:delete", ({ vm }) => void events.push(`fake-storage vm:delete ${vm.name}`));

      const net = ctx.registerNet({ name: "fake-net", drivers: ["fake"] });
      net.hook("vm:create", ({ vm }) => {
        events.push(`fake-net vm:create ${vm.name}`);
        vm.runtime.guestIP = "192.0.2.10";
      });
      net.hook("vm:start:before", ({ vm, boot }) => {
        events.push(`fake-net vm:start:before ${vm.name}`);
        boot.netArgs.push("--fake-net");
      });
      net.hook("vm:cleanup", ({ vm }) => void events.push(`fake-net vm:cleanup ${vm.name}`));
    },
  });
}

/** The engine over fakes with the real built-in storage and network plugins (no device-mapper here), then a user's plugin. */
async function world(o: { priority?: number } = {}) {
  let n = 0;
  const w = engineWorld({ paths: PATHS, newId: () => `id${String(++n).padStart(4, "0")}`, stopTimeoutMs: 1000, fakeProviders: { storage: [], net: [] } });
  stores.push(w.ts);
  const events: Events = [];
  const builtins = [
    createStorageDmPlugin({ probe: async () => ({ usable: false, reason: "no device-mapper here" }) }),
    storage,
    createNetUserPlugin({ portFree: async () => true }),
    createNetTapPlugin({ hostsFile: "/etc/hosts-test" }, {}),
  ];
  await w.load([...builtins.map((plugin) => ({ plugin, source: "builtin" })), { plugin: userPlugin(events, o), source: "/home/me/mine.ts" }]);
  return { ...w, engine: w.make(), events };
}

describe("a user's plugin replaces a built-in provider", () => {
  test("--storage fake-storage: the user's provider makes, attaches, cleans up and deletes the disks; the built-in copy never runs", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "mine", storage: "fake-storage" });
    expect(vm.spec.storage).toBe("fake-storage");
    expect(w.ts.store.getVM("mine")!.spec.storage).toBe("fake-storage");
    expect(vm.runtime.systemOverlay).toBe(join(vm.runtime.vmDir, "fake.img"));
    await w.engine.start("mine");
    expect(w.driver.launches[0]!.boot.disks).toEqual([{ path: join(vm.runtime.vmDir, "fake.img"), format: "raw" }]);
    await w.engine.stop("mine");
    // a daemon restart: the record alone says whose disks these are
    await w.make().delete("mine");
    expect(w.host.exec.lines().filter((l) => l.startsWith("cp "))).toEqual([]);
    expect(w.events.filter((e) => e.startsWith("fake-storage"))).toEqual([
      "fake-storage vm:create mine",
      "fake-storage vm:start:before mine",
      "fake-storage vm:cleanup mine attached",
      "fake-storage vm:cleanup mine -", // delete's stop of a stopped VM: cleanup again, from empty handles
      "fake-storage vm:delete mine",
    ]);
  });

  test("a VM naming no storage gets the built-in copy (same priority: registered first), and the user's provider runs nothing for it", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "plain" });
    expect(vm.spec.storage).toBe("copy");
    expect(w.host.exec.lines()).toEqual([`cp --sparse=always --reflink=auto /img/default/rootfs.ext4 ${join(vm.runtime.vmDir, "system.img")}`]);
    await w.engine.start("plain");
    await w.engine.delete("plain");
    expect(w.events.filter((e) => e.startsWith("fake-storage"))).toEqual([]);
  });

  test("a higher priority makes the user's provider the default", async () => {
    const w = await world({ priority: 100 });
    expect((await w.engine.create({ name: "auto" })).spec.storage).toBe("fake-storage");
    expect((await w.engine.create({ name: "asked", storage: "copy" })).spec.storage).toBe("copy");
  });

  test("an unknown --storage is refused before any work, naming the loaded ones", async () => {
    const w = await world();
    const err = await caught(w.engine.create({ name: "x", storage: "zfs" }));
    expect([err.code, err.exitCode, err.message]).toEqual(["E_BAD_REQUEST", 2, 'unknown storage "zfs" (known: dm, copy, fake-storage)']);
    expect(w.ts.store.listVMs()).toEqual([]);
    expect(w.events).toEqual([]);
  });

  test("crash safety: after a restart, reconcile of a dead VM reaches the provider its record names, with the handles from handles.json", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "ghost", storage: "fake-storage" });
    await w.engine.start("ghost");
    w.host.procs.table.delete(w.engine.cache.get(vm.id)!.pid); // the VM died with the daemon
    const out = await w.make().reconcile();
    expect(out).toEqual([{ vm: "ghost", action: "demoted", source: "scratch", cleanupErrors: [] }]);
    expect(w.events.filter((e) => e.includes("vm:cleanup"))).toEqual(["fake-storage vm:cleanup ghost attached", "fake-net vm:cleanup ghost"]);
  });

  test("a VM whose provider is no longer loaded is not started, and its delete says whose part did not run", async () => {
    const w = await world();
    const vm = sampleVM({ id: "orphan1", name: "orphan", storage: "zfs", net: "fake-net", vmsDir: PATHS.vmsDir, state: "stopped" });
    w.ts.store.upsertVM(vm);
    await writeHandlesFile(w.host.fs, vm.runtime.vmDir, emptyHandles());
    const err = await caught(w.engine.start("orphan"));
    expect([err.code, err.message]).toEqual(["E_STATE", 'vm orphan: storage "zfs" is not loaded (loaded: dm, copy, fake-storage)']);
    expect(w.driver.launches).toEqual([]);
    await w.engine.delete("orphan");
    expect(w.ts.store.getVM("orphan")).toBeNull();
    expect(w.log.of("warn").join("\n")).toContain('vm:delete: storage "zfs" is not loaded (loaded: dm, copy, fake-storage); its handlers did not run');
  });
});

describe("networks: the VM's provider serves it, chosen from what plugins registered and what the VMM can use", () => {
  test("a fake VMM's VM gets the user's network (net-user serves QEMU only, tap is opt-in); net-user allocates nothing for it", async () => {
    const w = await world();
    const vm = await w.engine.create({ name: "web" });
    expect([vm.spec.net, vm.runtime.guestIP, vm.runtime.sshPort]).toEqual(["fake-net", "192.0.2.10", 0]);
    await w.engine.start("web");
    expect(w.driver.launches[0]!.boot.netArgs).toEqual(["--fake-net"]);
    expect(w.events.filter((e) => e.startsWith("fake-net"))).toEqual(["fake-net vm:create web", "fake-net vm:start:before web"]);
  });

  test("--net: unknown names and networks the VMM cannot use are refused with today's messages", async () => {
    const w = await world();
    const unknown = await caught(w.engine.create({ name: "a", net: "bridge" }));
    expect([unknown.code, unknown.message]).toEqual(["E_BAD_REQUEST", 'unknown network mode "bridge" (known: user, tap, fake-net)']);
    const cannot = await caught(w.engine.create({ name: "b", net: "user" }));
    expect([cannot.code, cannot.message]).toEqual(["E_BAD_REQUEST", "fake cannot use --net user (it supports: tap, fake-net)"]);
    expect(w.ts.store.listVMs()).toEqual([]);
  });

  test("a VMM no loaded network serves by default: a one-line error naming what it could use", async () => {
    let n = 0;
    const w = engineWorld({ paths: PATHS, newId: () => `id${++n}`, fakeProviders: { net: [] } });
    stores.push(w.ts);
    w.providers.add("net", "net-tap", { name: "tap", optIn: true });
    const err = await caught(w.make().create({ name: "a" }));
    expect(err.message).toBe("no default network serves fake (name one with --net: tap)");
    expect((await w.make().create({ name: "b", net: "tap" })).spec.net).toBe("tap");
  });
});
