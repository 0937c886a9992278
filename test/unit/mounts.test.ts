import { expect, test } from "bun:test";
import { mountPoints, pathUnder, removeUnlessMounted } from "../../src/host/mounts.ts";
import { caught } from "../helpers/fakes.ts";

/** The two FS calls these use; records what was removed. */
function fakeFs(files: Record<string, string>) {
  const removed: string[] = [];
  return {
    removed,
    fs: {
      readText: async (p: string) => files[p] ?? null,
      rmrf: async (p: string) => void removed.push(p),
    },
  };
}

const MOUNTINFO = [
  "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw",
  "90 22 0:5 / /h/images/.x.build/root/proc rw - proc proc rw",
  "91 22 0:6 / /h/images/with\\040space/sys rw - sysfs sys rw",
  "92 22 0:7 / /h/images/.x.buildother rw - tmpfs t rw",
].join("\n");

test("mountPoints reads every mount point, octal escapes decoded; pathUnder is the dir or inside it, not a sibling prefix", async () => {
  const { fs } = fakeFs({ "/m": MOUNTINFO });
  expect(await mountPoints(fs, "/m")).toEqual(["/", "/h/images/.x.build/root/proc", "/h/images/with space/sys", "/h/images/.x.buildother"]);
  expect(pathUnder("/a/b", "/a/b")).toBe(true);
  expect(pathUnder("/a/b/c", "/a/b")).toBe(true);
  expect(pathUnder("/a/bc", "/a/b")).toBe(false);
});

test("removeUnlessMounted removes a dir with no mount under it and refuses one with a mount, naming it", async () => {
  const { fs, removed } = fakeFs({ "/m": MOUNTINFO });
  await removeUnlessMounted(fs, "/h/images/.y.build", "/m");
  expect(removed).toEqual(["/h/images/.y.build"]);
  const e = await caught(removeUnlessMounted(fs, "/h/images/.x.build", "/m"));
  expect(e.message).toBe("/h/images/.x.build kept: mounted under it: /h/images/.x.build/root/proc (unmount, then restart the daemon)");
  expect((await caught(removeUnlessMounted(fs, "/h/images/with space", "/m"))).message).toContain("/h/images/with space/sys");
  expect(removed).toEqual(["/h/images/.y.build"]);
});
