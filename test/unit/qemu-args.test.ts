import { describe, expect, test } from "bun:test";
import type { VMRecord } from "../../src/shared/model.ts";
import type { BootConfig } from "../../src/vmm/driver.ts";
import { savedPorts, memoryBackendArgs, qemuArgs, qemuEscape, qmpArg, receiverArgs } from "../../plugins/qemu/args.ts";

function sampleVM(over: Partial<VMRecord["runtime"]> = {}): VMRecord {
  return {
    id: "abc123",
    name: "demo",
    spec: { image: "default", cpus: 2, memoryMiB: 512, diskMiB: 0, workDiskMiB: 0, driver: "qemu", storage: "copy" },
    runtime: {
      state: "created", guestIP: "", apiSockPath: "/v/abc123/api.sock", vsockPath: "", vsockCID: 0,
      logPath: "/v/abc123/serial.log", metricsPath: "", dnsName: "", vmDir: "/v/abc123", systemOverlay: "",
      workDiskPath: "", lastError: "", sshHost: "", sshPort: 0, ...over,
    },
    createdAt: "", updatedAt: "",
  };
}

function boot(over: Partial<BootConfig> = {}): BootConfig {
  return {
    kernelPath: "/img/vmlinuz",
    initrdPaths: ["/img/initrd.img"],
    kernelArgs: ["hostname=demo"],
    disks: [{ path: "/v/abc123/system.img", format: "raw" }],
    netArgs: ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"],
    ...over,
  };
}

const o = { qmpSock: "/v/abc123/api.sock", pidfile: "/v/abc123/qemu.pid", serialLog: "/v/abc123/serial.log" };

/** The value following a flag (first occurrence). */
function after(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

describe("qemuArgs", () => {
  test("TCG: q35, tb-size, no -cpu host", () => {
    const a = qemuArgs(sampleVM(), boot(), { ...o, accel: "tcg" });
    expect(after(a, "-M")).toBe("q35");
    expect(after(a, "-accel")).toBe("tcg,tb-size=64");
    expect(a).not.toContain("-cpu");
  });

  test("KVM: -accel kvm -cpu host", () => {
    const a = qemuArgs(sampleVM(), boot(), { ...o, accel: "kvm" });
    expect(after(a, "-accel")).toBe("kvm");
    expect(after(a, "-cpu")).toBe("host");
  });

  test("resources, isolation flags, serial, kernel, initrd, append", () => {
    const a = qemuArgs(sampleVM(), boot(), { ...o, accel: "tcg" });
    expect(after(a, "-name")).toBe("banger-abc123");
    expect(after(a, "-m")).toBe("512");
    expect(after(a, "-smp")).toBe("2");
    for (const f of ["-nodefaults", "-no-user-config", "-no-reboot"]) expect(a).toContain(f);
    expect(after(a, "-display")).toBe("none");
    expect(after(a, "-serial")).toBe("file:/v/abc123/serial.log");
    expect(after(a, "-kernel")).toBe("/img/vmlinuz");
    expect(after(a, "-initrd")).toBe("/img/initrd.img");
    expect(after(a, "-append")).toBe("console=ttyS0 quiet panic=-1 mitigations=off nokaslr hostname=demo");
    expect(a).not.toContain("-daemonize");
  });

  test("one virtio-blk-pci per disk with format, cache and readonly", () => {
    const a = qemuArgs(
      sampleVM(),
      boot({ disks: [{ path: "/v/sys.img", format: "raw" }, { path: "/v/work,1.qcow2", format: "qcow2", readOnly: true }] }),
      { ...o, accel: "tcg" },
    );
    const drives = a.filter((_, i) => a[i - 1] === "-drive");
    expect(drives).toEqual([
      "id=disk0,file=/v/sys.img,format=raw,if=none,cache=unsafe,discard=unmap",
      "id=disk1,file=/v/work,,1.qcow2,format=qcow2,if=none,cache=writeback,discard=unmap,readonly=on",
    ]);
    expect(a.filter((_, i) => a[i - 1] === "-device" && a[i].startsWith("virtio-blk-pci"))).toEqual([
      "virtio-blk-pci,drive=disk0",
      "virtio-blk-pci,drive=disk1",
    ]);
  });

  test("net args verbatim, rng, QMP on the API socket, pidfile", () => {
    const a = qemuArgs(sampleVM(), boot(), { ...o, accel: "tcg" });
    const i = a.indexOf("-netdev");
    expect(a.slice(i, i + 4)).toEqual(["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]);
    expect(a).toContain("virtio-rng-pci");
    expect(after(a, "-qmp")).toBe("unix:/v/abc123/api.sock,server=on,wait=off");
    expect(after(a, "-pidfile")).toBe("/v/abc123/qemu.pid");
    // findProcess searches the cmdline for the socket path
    expect(a.join(" ")).toContain("/v/abc123/api.sock");
  });

  test("no initrd; several initrds need the driver's concatenation", () => {
    expect(qemuArgs(sampleVM(), boot({ initrdPaths: [] }), { ...o, accel: "tcg" })).not.toContain("-initrd");
    expect(() => qemuArgs(sampleVM(), boot({ initrdPaths: ["/a", "/b"] }), { ...o, accel: "tcg" })).toThrow(/concatenat/);
    const a = qemuArgs(sampleVM(), boot({ initrdPaths: ["/a", "/b"] }), { ...o, accel: "tcg", initrd: "/v/abc123/initrd.img" });
    expect(after(a, "-initrd")).toBe("/v/abc123/initrd.img");
  });

  test("escaping commas", () => {
    expect(qemuEscape("a,b,,c")).toBe("a,,b,,,,c");
    expect(qmpArg("/x,y/api.sock")).toBe("unix:/x,,y/api.sock,server=on,wait=off");
  });
});

describe("qemuArgs: tap nics", () => {
  test("each nic becomes a tap netdev (no qemu-ifup scripts) and a virtio-net device with its MAC", () => {
    const args = qemuArgs(sampleVM(), boot({ netArgs: [], nics: [{ tap: "bt-abc", mac: "52:54:00:01:02:03" }, { tap: "bt-def", mac: "52:54:00:04:05:06" }] }), { accel: "tcg", ...o });
    const pairs: string[] = [];
    args.forEach((a, i) => {
      if (a === "-netdev" || (a === "-device" && args[i + 1]!.startsWith("virtio-net"))) pairs.push(`${a} ${args[i + 1]}`);
    });
    expect(pairs).toEqual([
      "-netdev tap,id=tap0,ifname=bt-abc,script=no,downscript=no",
      "-device virtio-net-pci,netdev=tap0,mac=52:54:00:01:02:03",
      "-netdev tap,id=tap1,ifname=bt-def,script=no,downscript=no",
      "-device virtio-net-pci,netdev=tap1,mac=52:54:00:04:05:06",
    ]);
  });

  test("no nics: no tap netdev", () => {
    expect(qemuArgs(sampleVM(), boot(), { accel: "tcg", ...o }).join(" ")).not.toContain("tap");
  });
});

describe("memoryBackendArgs and receiverArgs (file-backed RAM for snapshots)", () => {
  test("the backend keeps the default RAM id (pc.ram), so anonymous and file-backed RAM migrate into each other; commas in the path are escaped", () => {
    expect(memoryBackendArgs(512, { path: "/s/a,b/memory.ram", share: false })).toEqual([
      "-object", "memory-backend-file,id=pc.ram,size=512M,mem-path=/s/a,,b/memory.ram,share=off",
      "-machine", "memory-backend=pc.ram",
    ]);
    expect(memoryBackendArgs(256, { path: "/r", share: true })[1]).toEndWith(",share=on");
  });

  const launched = [
    ...qemuArgs(sampleVM(), boot({
      disks: [{ path: "/v/abc123/system.qcow2", format: "qcow2" }, { path: "/v/abc123/ro.img", format: "raw", readOnly: true }],
      netArgs: ["-netdev", "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22,guestfwd=tcp:10.0.2.100:3128-cmd:socat -lf /x FD:0,,shut-down", "-device", "virtio-net-pci,netdev=net0"],
    }), { ...o, accel: "tcg" }),
    // a clone's own private mapping of its snapshot's RAM, which a receiver must not copy
    ...memoryBackendArgs(512, { path: "/snaps/old/memory.ram", share: false }),
  ];
  const r = receiverArgs(launched, { qmpSock: "/v/abc123/rcv.sock", memoryMiB: 512, placeholders: ["/v/abc123/receiver-disk0.img", "/v/abc123/receiver-disk1.img"] });

  test("same machine, kernel and devices as the VM; its own QMP socket, no serial file, no pidfile", () => {
    for (const flag of ["-M", "-accel", "-m", "-smp", "-kernel", "-initrd", "-append"]) expect(after(r, flag)).toBe(after(launched, flag));
    expect(r.filter((a) => a === "-device")).toHaveLength(launched.filter((a) => a === "-device").length);
    expect(after(r, "-qmp")).toBe(qmpArg("/v/abc123/rcv.sock"));
    expect(after(r, "-serial")).toBe("null");
    expect(r).not.toContain("-pidfile");
    expect(after(r, "-name")).toBe("banger-abc123-snapshot");
    expect(r.filter((a) => a === "-nodefaults" || a === "-no-reboot")).toHaveLength(2);
  });

  test("disks become same-sized stand-ins (read-only kept: the device exposes it), the SSH forward binds port 0, a tap is refused", () => {
    const drives = r.filter((_, i) => r[i - 1] === "-drive");
    expect(drives).toEqual([
      "id=disk0,file=/v/abc123/receiver-disk0.img,format=raw,if=none,cache=unsafe,discard=unmap",
      "id=disk1,file=/v/abc123/receiver-disk1.img,format=raw,if=none,cache=unsafe,discard=unmap,readonly=on",
    ]);
    const netdevs = r.filter((_, i) => r[i - 1] === "-netdev");
    expect(netdevs).toEqual(["user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:0-:22,guestfwd=tcp:10.0.2.100:3128-cmd:socat -lf /x FD:0,,shut-down"]);
    // a tap has no stand-in: its VM holds it, and virtio-net's saved state needs one to load into
    const onTap = qemuArgs(sampleVM(), boot({ nics: [{ tap: "bt-abc123", mac: "52:54:00:aa:bb:cc" }] }), { ...o, accel: "tcg" });
    expect(() => receiverArgs(onTap, { qmpSock: "/s", memoryMiB: 512, placeholders: ["/a"] })).toThrow(/no stand-in for -netdev tap/);
  });

  test("RAM: the clone's private backend is replaced by one shared memfd (copied to the snapshot's RAM file afterwards); it waits for the stream and never runs", () => {
    expect(r.join(" ")).not.toContain("/snaps/old/memory.ram");
    expect(r.filter((a) => a.startsWith("memory-backend"))).toHaveLength(2);
    expect(r.slice(-7)).toEqual(["-object", "memory-backend-memfd,id=pc.ram,size=512M,share=on", "-machine", "memory-backend=pc.ram", "-incoming", "defer", "-S"]);
  });

  test("a stand-in per disk, no more, no fewer", () => {
    expect(() => receiverArgs(launched, { qmpSock: "/s", memoryMiB: 512, placeholders: ["/a"] })).toThrow(/no stand-in/);
    expect(() => receiverArgs(launched, { qmpSock: "/s", memoryMiB: 512, placeholders: ["/a", "/b", "/c"] })).toThrow(/3 stand-ins for 2 disks/);
  });
});

describe("the agents' ports", () => {
  test("last of the devices (every other keeps its PCI address), the exec agent's after the guest agent's, pipe paths comma-escaped; savedPorts finds them; none without pipes", () => {
    const a = qemuArgs(sampleVM(), boot(), { ...o, accel: "tcg", agentPipe: "/v/a,b/agent", execPipe: "/v/a,b/exec" });
    const rng = a.indexOf("virtio-rng-pci");
    expect(a.slice(rng + 1, a.indexOf("-qmp"))).toEqual([
      "-device", "virtio-serial-pci,id=agentbus",
      "-chardev", "pipe,id=agent,path=/v/a,,b/agent", "-device", "virtserialport,bus=agentbus.0,chardev=agent,name=banger.agent",
      "-chardev", "pipe,id=exec,path=/v/a,,b/exec", "-device", "virtserialport,bus=agentbus.0,chardev=exec,name=banger.exec",
    ]);
    expect(savedPorts(a)).toEqual({ agent: true, exec: true });
    expect(savedPorts(qemuArgs(sampleVM(), boot(), { ...o, accel: "tcg", agentPipe: "/v/a,b/agent" }))).toEqual({ agent: true, exec: false });
    const none = qemuArgs(sampleVM(), boot(), { ...o, accel: "tcg" });
    expect(savedPorts(none)).toEqual({ agent: false, exec: false });
    expect(none.join(" ")).not.toContain("virtio-serial");
  });

  test("a receiver keeps the ports on null chardevs (same ids): its state loads, the VM's FIFOs are not opened twice", () => {
    const a = qemuArgs(sampleVM(), boot(), { ...o, accel: "tcg", agentPipe: "/v/abc123/agent", execPipe: "/v/abc123/exec" });
    const r = receiverArgs(a, { qmpSock: "/v/abc123/rcv.sock", memoryMiB: 512, placeholders: ["/v/abc123/receiver-disk0.img"] });
    expect(r.filter((_, i) => r[i - 1] === "-chardev")).toEqual(["null,id=agent", "null,id=exec"]);
    expect(savedPorts(r)).toEqual({ agent: true, exec: true });
    expect(r.join(" ")).not.toContain("/v/abc123/agent");
    expect(r.join(" ")).not.toContain("/v/abc123/exec");
  });
});
