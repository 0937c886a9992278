import { describe, expect, test } from "bun:test";
import {
  checkBridgeNat,
  checkDeviceMapper,
  checkDisk,
  checkFirecracker,
  checkImage,
  checkKvm,
  checkLoop,
  checkQemu,
  checkTools,
  checkTun,
  diagnose,
  EXTRA_TOOLS,
  HOST_TOOLS,
  type Finding,
  type HostView,
} from "../../src/doctor/checks.ts";
import { gatherHostView } from "../../src/doctor/view.ts";
import { hasCapNetAdmin } from "../../src/host/privileges.ts";
import { fakeExec, fakeFS } from "../helpers/fakes.ts";

const GiB = 1024 ** 3;

/** A KVM host where everything works, as root. Each test breaks one thing. */
function healthy(): HostView {
  const tools: Record<string, string | null> = {};
  for (const t of [...HOST_TOOLS.map((x) => x.tool), ...EXTRA_TOOLS]) tools[t] = `/usr/bin/${t}`;
  return {
    home: "/var/lib/banger",
    uid: 0,
    capNetAdmin: true,
    kvm: { exists: true, pvm: false, rw: true, forced: "" },
    tools,
    versions: { qemu: "QEMU emulator version 7.2.22", firecracker: "Firecracker v1.16.1" },
    dm: { kernel: true, control: true, versionOk: true, versionError: "" },
    tun: { exists: true, rw: true },
    loopControl: { exists: true, rw: true },
    disk: { path: "/var/lib/banger", freeBytes: 50 * GiB },
    image: { name: "default", present: true, dir: "/var/lib/banger/images/default" },
  };
}
function view(edit: (v: HostView) => void): HostView {
  const v = healthy();
  edit(v);
  return v;
}
const pick = (f: Finding) => [f.level, f.fix];

describe("diagnose", () => {
  test("a healthy KVM host: every finding ok, can run VMs", () => {
    const r = diagnose(healthy());
    expect(r.ok).toBe(true);
    expect(r.findings.filter((f) => f.level !== "ok")).toEqual([]);
    expect(r.findings.map((f) => f.id)).toContain("device-mapper");
  });

  test("this machine's shape (kvm_pvm, no dm, no firecracker): notes only, can run VMs under TCG", () => {
    const r = diagnose(
      view((v) => {
        v.kvm.pvm = true;
        v.tools.firecracker = null;
        v.versions.firecracker = null;
        v.dm = { kernel: false, control: false, versionOk: false, versionError: "" };
      }),
    );
    expect(r.ok).toBe(true);
    expect(r.findings.filter((f) => f.level !== "ok").map((f) => [f.id, f.level])).toEqual([
      ["firecracker", "note"],
      ["kvm", "note"],
      ["device-mapper", "note"],
    ]);
  });

  test("any fail → cannot run VMs", () => {
    expect(diagnose(view((v) => (v.image.present = false))).ok).toBe(false);
    expect(diagnose(view((v) => (v.disk.freeBytes = GiB / 2))).ok).toBe(false);
    expect(diagnose(view((v) => (v.tools["mkfs.ext4"] = null))).ok).toBe(false);
    // warnings do not block
    expect(diagnose(view((v) => (v.tun.exists = false))).ok).toBe(true);
  });
});

describe("kvm", () => {
  test("missing → note with modprobe", () => {
    const f = checkKvm(view((v) => (v.kvm.exists = false)));
    expect(f.level).toBe("note");
    expect(f.fix).toContain("sudo modprobe kvm_intel || sudo modprobe kvm_amd");
  });
  test("kvm_pvm → note saying why, nothing to run", () => {
    const f = checkKvm(view((v) => (v.kvm.pvm = true)));
    expect(f).toMatchObject({ level: "note", fix: "" });
    expect(f.message).toContain("kvm_pvm");
    expect(f.message).toContain("TCG");
  });
  test("not openable → usermod into the kvm group", () => {
    expect(pick(checkKvm(view((v) => (v.kvm.rw = false))))).toEqual(["note", 'sudo usermod -aG kvm "$USER"  (then log in again)']);
  });
  test("BANGER_ACCEL overrides", () => {
    expect(checkKvm(view((v) => (v.kvm.forced = "tcg"))).level).toBe("note");
    expect(checkKvm(view((v) => ((v.kvm.forced = "kvm"), (v.kvm.pvm = true)))).level).toBe("ok");
  });
});

describe("qemu and firecracker", () => {
  test("qemu missing, no KVM firecracker → fail with the apt-get line", () => {
    const f = checkQemu(view((v) => ((v.tools["qemu-system-x86_64"] = null), (v.kvm.pvm = true))));
    expect(pick(f)).toEqual(["fail", "sudo apt-get install -y --no-install-recommends qemu-system-x86"]);
  });
  test("qemu missing but firecracker + KVM work → only a warning", () => {
    const v = view((v) => (v.tools["qemu-system-x86_64"] = null));
    expect(checkQemu(v).level).toBe("warn");
    expect(diagnose(v).ok).toBe(true);
  });
  test("qemu present but --version fails → fail (broken binary)", () => {
    expect(checkQemu(view((v) => (v.versions.qemu = null))).level).toBe("fail");
  });
  test("qemu ok shows its version", () => {
    expect(checkQemu(healthy()).message).toBe("QEMU emulator version 7.2.22 (/usr/bin/qemu-system-x86_64)");
  });
  test("firecracker missing is a note when qemu works, a warning when it does not", () => {
    expect(checkFirecracker(view((v) => (v.tools.firecracker = null))).level).toBe("note");
    expect(checkFirecracker(view((v) => ((v.tools.firecracker = null), (v.tools["qemu-system-x86_64"] = null)))).level).toBe("warn");
  });
  test("firecracker present without KVM → note; with KVM → ok with version", () => {
    expect(checkFirecracker(view((v) => (v.kvm.exists = false))).level).toBe("note");
    expect(checkFirecracker(healthy())).toMatchObject({ level: "ok", message: "Firecracker v1.16.1 (/usr/bin/firecracker)" });
  });
});

describe("tools", () => {
  test("a runtime tool missing → fail naming its package", () => {
    const f = checkTools(view((v) => (v.tools.resize2fs = null))).find((x) => x.id === "tool:resize2fs")!;
    expect(pick(f)).toEqual(["fail", "sudo apt-get install -y --no-install-recommends e2fsprogs"]);
  });
  test("a build-only tool missing → warn while an image exists, fail when one must be built", () => {
    const one = (present: boolean) => checkTools(view((v) => ((v.tools.mmdebstrap = null), (v.image.present = present)))).find((x) => x.id === "tool:mmdebstrap")!.level;
    expect(one(true)).toBe("warn");
    expect(one(false)).toBe("fail");
  });
});

describe("device-mapper and loop", () => {
  test("not in the kernel → note, modprobe", () => {
    expect(pick(checkDeviceMapper(view((v) => (v.dm.kernel = false))))).toEqual(["note", "sudo modprobe dm_mod dm_snapshot"]);
  });
  test("no control node → note, dmsetup mknodes", () => {
    expect(pick(checkDeviceMapper(view((v) => (v.dm.control = false))))).toEqual(["note", "sudo dmsetup mknodes"]);
  });
  test("dmsetup missing → apt-get dmsetup", () => {
    expect(pick(checkDeviceMapper(view((v) => (v.tools.dmsetup = null))))).toEqual(["note", "sudo apt-get install -y --no-install-recommends dmsetup"]);
  });
  test("dmsetup version fails: as root → modprobe; not root → run as root; its error is shown", () => {
    const root = checkDeviceMapper(view((v) => (v.dm = { kernel: true, control: true, versionOk: false, versionError: "open failed: Permission denied" })));
    expect(root.message).toContain("open failed: Permission denied");
    expect(root.fix).toBe("sudo modprobe dm_mod dm_snapshot");
    expect(checkDeviceMapper(view((v) => ((v.dm.versionOk = false), (v.uid = 1000)))).fix).toBe("run banger as root (device-mapper needs it)");
  });
  test("dm works but loop devices do not → note, modprobe loop", () => {
    expect(pick(checkDeviceMapper(view((v) => (v.loopControl.exists = false))))).toEqual(["note", "sudo modprobe loop"]);
    expect(pick(checkLoop(view((v) => (v.loopControl.exists = false))))).toEqual(["note", "sudo modprobe loop"]);
    expect(pick(checkLoop(view((v) => (v.loopControl.rw = false))))).toEqual(["note", "run banger as root"]);
  });
});

describe("networking", () => {
  test("/dev/net/tun missing → warn, modprobe tun; not openable → root", () => {
    expect(pick(checkTun(view((v) => (v.tun.exists = false))))).toEqual(["warn", "sudo modprobe tun"]);
    expect(pick(checkTun(view((v) => (v.tun.rw = false))))).toEqual(["warn", "run banger as root"]);
  });
  test("bridge/NAT: ip missing, no iptables/nft, no rights", () => {
    expect(pick(checkBridgeNat(view((v) => (v.tools.ip = null))))).toEqual(["warn", "sudo apt-get install -y --no-install-recommends iproute2"]);
    expect(pick(checkBridgeNat(view((v) => ((v.tools.iptables = null), (v.tools.nft = null)))))).toEqual(["warn", "sudo apt-get install -y --no-install-recommends nftables"]);
    const f = checkBridgeNat(view((v) => ((v.uid = 1000), (v.capNetAdmin = false))));
    expect(f.level).toBe("warn");
    expect(f.fix).toContain("setcap cap_net_admin+ep");
  });
  test("CAP_NET_ADMIN without root is enough; iptables alone is enough", () => {
    expect(checkBridgeNat(view((v) => ((v.uid = 1000), (v.tools.nft = null)))).message).toBe("CAP_NET_ADMIN, ip and iptables present");
  });
  test("CapEff parsing", () => {
    expect(hasCapNetAdmin("Name:\tx\nCapEff:\t000001ffffffffff\n")).toBe(true);
    expect(hasCapNetAdmin("CapEff:\t0000000000001000\n")).toBe(true);
    expect(hasCapNetAdmin("CapEff:\t0000000000000fff\n")).toBe(false);
    expect(hasCapNetAdmin(null)).toBe(false);
  });
});

describe("disk and image", () => {
  test("thresholds: < 1 GiB fail, < 4 GiB warn, unknown warn", () => {
    expect(checkDisk(view((v) => (v.disk.freeBytes = 0.5 * GiB))).level).toBe("fail");
    expect(checkDisk(view((v) => (v.disk.freeBytes = 2 * GiB))).level).toBe("warn");
    expect(checkDisk(view((v) => (v.disk.freeBytes = 4 * GiB))).level).toBe("ok");
    expect(pick(checkDisk(view((v) => (v.disk.freeBytes = null))))).toEqual(["warn", "df -h /var/lib/banger"]);
  });
  test("no image → fail with banger image build (named when not default)", () => {
    expect(pick(checkImage(view((v) => (v.image.present = false))))).toEqual(["fail", "banger image build"]);
    expect(checkImage(view((v) => ((v.image.present = false), (v.image.name = "dev")))).fix).toBe("banger image build --name dev");
  });

  test("not root: image build needs root, so the fix says so and how to import one instead; a present image is a note saying it", () => {
    const none = checkImage(view((v) => ((v.image.present = false), (v.uid = 1000))));
    expect(none.level).toBe("fail");
    expect(none.fix).toBe("banger image build needs root: run it as root, or import one built by root: banger image import NAME --kernel K --rootfs R --initrd I");
    const there = checkImage(view((v) => (v.uid = 1000)));
    expect(there.level).toBe("note");
    expect(there.message).toContain("image build and vm commit need root here");
  });
});

describe("gatherHostView (recorded host)", () => {
  test("reads tools, versions, dm, devices, caps, disk and image through the host seam", async () => {
    const exec = fakeExec()
      .on("/usr/bin/qemu-system-x86_64 --version", { stdout: "QEMU emulator version 7.2.22\nCopyright\n" })
      .on("/usr/bin/dmsetup version", { exitCode: 1, stderr: "/dev/mapper/control: open failed: No such device\nmore\n" });
    exec.missing.add("firecracker");
    const fs = fakeFS({
      "/dev/kvm": "",
      "/sys/module/kvm_pvm": "",
      "/dev/mapper/control": "",
      "/dev/net/tun": "",
      "/proc/misc": "200 tun\n237 loop-control\n",
      "/proc/self/status": "CapEff:\t000001ffffffffff\n",
      "/srv/images/default/rootfs.ext4": "",
    });
    const opened: string[] = [];
    const v = await gatherHostView(
      { exec, fs },
      {
        home: "/srv",
        env: {},
        uid: 0,
        canOpen: async (p) => (opened.push(p), p !== "/dev/net/tun"),
        freeBytes: async (p) => (p === "/srv" ? 7 * GiB : null),
      },
    );
    expect(v.versions).toEqual({ qemu: "QEMU emulator version 7.2.22", firecracker: null });
    expect(v.tools.firecracker).toBeNull();
    expect(v.kvm).toEqual({ exists: true, pvm: true, rw: true, forced: "" });
    expect(v.dm).toEqual({ kernel: false, control: true, versionOk: false, versionError: "/dev/mapper/control: open failed: No such device" });
    expect(v.tun).toEqual({ exists: true, rw: false });
    expect(v.loopControl).toEqual({ exists: false, rw: false });
    expect(v.capNetAdmin).toBe(true);
    expect(v.disk).toEqual({ path: "/srv", freeBytes: 7 * GiB });
    expect(v.image).toEqual({ name: "default", present: true, dir: "/srv/images/default" });
    expect(opened.sort()).toEqual(["/dev/kvm", "/dev/net/tun"]);
    // only reads: no writes, no mkdir
    expect(fs.ops).toEqual([]);
  });

  test("no /dev/mapper/control → dmsetup is never run (it would create the node); a missing home is measured at its parent", async () => {
    const exec = fakeExec();
    const fs = fakeFS({ "/var/lib/x": "" });
    const v = await gatherHostView({ exec, fs }, { home: "/var/lib/banger/home", env: { BANGER_ACCEL: "tcg" }, uid: 1000, canOpen: async () => true, freeBytes: async () => 1 });
    expect(exec.lines().some((l) => l.includes("dmsetup"))).toBe(false);
    expect(v.disk.path).toBe("/var/lib");
    expect(v.kvm.forced).toBe("tcg");
    expect(v.image.present).toBe(false);
  });
});
