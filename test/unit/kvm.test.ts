import { describe, expect, test } from "bun:test";
import type { FS } from "../../src/host/types.ts";
import { fakeFS as fullFakeFS } from "../helpers/fakes.ts";
import { accelFor, kvmUsable } from "../../src/vmm/kvm.ts";

function fakeFS(existing: string[]): Pick<{ fs: FS }, "fs"> {
  const set = new Set(existing);
  return {
    fs: {
      ...fullFakeFS(),
      readText: async () => null,
      writeAtomic: async () => {},
      exists: async (p) => set.has(p),
      mkdirp: async () => {},
      rmrf: async () => {},
      list: async () => [],
    },
  };
}

const opened: string[] = [];
const canOpen = (ok: boolean) => async (p: string) => {
  opened.push(p);
  return ok;
};

describe("kvmUsable", () => {
  test("missing /dev/kvm → not usable", async () => {
    const r = await kvmUsable(fakeFS([]), { env: {}, canOpen: canOpen(true) });
    expect(r.usable).toBe(false);
    expect(r.reason).toContain("/dev/kvm does not exist");
    expect(accelFor(r)).toBe("tcg");
  });

  test("kvm_pvm loaded → not usable even though the device opens", async () => {
    const r = await kvmUsable(fakeFS(["/dev/kvm", "/sys/module/kvm_pvm"]), { env: {}, canOpen: canOpen(true) });
    expect(r.usable).toBe(false);
    expect(r.reason).toContain("kvm_pvm");
  });

  test("device not openable → not usable", async () => {
    const r = await kvmUsable(fakeFS(["/dev/kvm"]), { env: {}, canOpen: canOpen(false) });
    expect(r.usable).toBe(false);
    expect(r.reason).toContain("cannot be opened");
  });

  test("plain KVM that opens → usable", async () => {
    const r = await kvmUsable(fakeFS(["/dev/kvm"]), { env: {}, canOpen: canOpen(true) });
    expect(r).toEqual({ usable: true, reason: "/dev/kvm is usable" });
    expect(accelFor(r)).toBe("kvm");
  });

  test("injected paths are the ones checked", async () => {
    const r = await kvmUsable(fakeFS(["/x/kvm"]), { env: {}, devPath: "/x/kvm", pvmModulePath: "/x/pvm", canOpen: canOpen(true) });
    expect(r.usable).toBe(true);
    expect(opened.at(-1)).toBe("/x/kvm");
  });

  test("BANGER_ACCEL overrides the probe both ways", async () => {
    const tcg = await kvmUsable(fakeFS(["/dev/kvm"]), { env: { BANGER_ACCEL: "tcg" }, canOpen: canOpen(true) });
    expect(tcg.usable).toBe(false);
    expect(tcg.reason).toContain("BANGER_ACCEL=tcg");
    const kvm = await kvmUsable(fakeFS(["/dev/kvm", "/sys/module/kvm_pvm"]), { env: { BANGER_ACCEL: "KVM" }, canOpen: canOpen(false) });
    expect(kvm.usable).toBe(true);
  });

  test("real host: answers without throwing", async () => {
    const { createFS } = await import("../../src/host/fs.ts");
    const r = await kvmUsable({ fs: createFS() }, { env: {} });
    expect(typeof r.reason).toBe("string");
  });
});
