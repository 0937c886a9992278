// The image plugin's image:build hook over recording fakes: what it refuses before it runs anything.
import { afterEach, expect, test } from "bun:test";
import image from "../../plugins/image/index.ts";
import { ImageService } from "../../src/daemon/images.ts";
import { daemonPaths } from "../../src/shared/paths.ts";
import { caught, engineWorld, type TestStore } from "../helpers/fakes.ts";

const stores: TestStore[] = [];
afterEach(() => {
  while (stores.length) stores.pop()!.cleanup();
});

const NOT_ROOT = "Name:\tbanger\nUid:\t1000\t1000\t1000\t1000\nCapEff:\t0000000000000000\n";

test("not root: image build and a build --from are refused in one line before any tool runs or anything is recorded", async () => {
  const paths = daemonPaths("/state");
  let n = 0;
  const w = engineWorld({ paths, newId: () => `id${++n}` });
  stores.push(w.ts);
  await w.load([{ plugin: image, source: "test" }]);
  w.host.fs.files.set("/proc/self/status", NOT_ROOT);
  const images = new ImageService(w.ts.store, w.hooks, w.host, paths.imagesDir);
  const before = w.ts.store.listImages().map((i) => i.name);
  const full = await caught(images.build("fresh", false, () => {}));
  expect(full.code).toBe("E_PERMISSION");
  expect(full.message).toBe("image:image:build: image build (mmdebstrap --mode=root, a chroot) needs root: run banger as root, or import an image built by root (`banger image import NAME --kernel K --rootfs R --initrd I`); VMs themselves run without root");
  w.ts.store.upsertImage({ name: "base", dir: "/state/images/base", kernelPath: "/state/images/base/vmlinuz", initrdPath: "", rootfsPath: "/state/images/base/rootfs.ext4", kernelVersion: "", sizeBytes: 0, createdAt: "2026-01-01T00:00:00.000Z", source: "built" });
  const derived = await caught(images.derive({ name: "tools", from: "base", run: ["true"] }, false, () => {}));
  expect(derived.code).toBe("E_PERMISSION");
  expect(derived.message).toContain("image build --from (its steps run in a chroot) needs root");
  expect(w.host.exec.lines()).toEqual([]);
  expect(w.ts.store.listImages().map((i) => i.name).sort()).toEqual([...before, "base"].sort());
});
