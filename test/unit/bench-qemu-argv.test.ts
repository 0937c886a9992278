import { describe, expect, test } from "bun:test";
import { argvValue, parseQemuLogArgv, rewriteQemuArgv } from "../../scripts/bench/qemu-argv.ts";

// the shape plugins/qemu/driver.ts writes: "# <binary> <args joined by spaces>"
const ARGV = [
  "/usr/bin/qemu-system-x86_64", "-name", "banger-fd6c", "-M", "q35", "-accel", "tcg,tb-size=64", "-m", "256", "-smp", "1",
  "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
  "-serial", "file:/tmp/bb-x/vms/fd6c/serial.log", "-kernel", "/tmp/bb-x/images/default/vmlinuz",
  "-initrd", "/tmp/bb-x/vms/fd6c/initrd.img", "-append", "console=ttyS0 quiet panic=-1 mitigations=off nokaslr",
  "-drive", "id=disk0,file=/tmp/bb-x/vms/fd6c/system.img,format=raw,if=none,cache=unsafe,discard=unmap",
  "-device", "virtio-blk-pci,drive=disk0",
  "-netdev", "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:27819-:22", "-device", "virtio-net-pci,netdev=n0",
  "-device", "virtio-rng-pci", "-qmp", "unix:/tmp/bb-x/vms/fd6c/api.sock,server=on,wait=off", "-pidfile", "/tmp/bb-x/vms/fd6c/qemu.pid",
];
const LOG = `# ${ARGV.join(" ")}\nqemu-system-x86_64: some warning\n`;

describe("parseQemuLogArgv", () => {
  test("rebuilds the exact argv, including the spaced -append value and value-less flags", () => {
    expect(parseQemuLogArgv(LOG)).toEqual(ARGV);
  });

  test("a kernel argument with a dash inside is kept in -append", () => {
    const argv = [...ARGV];
    argv[argv.indexOf("-append") + 1] = "console=ttyS0 panic=-1 init=/sbin/x -- single";
    expect(argvValue(parseQemuLogArgv(`# ${argv.join(" ")}\n`), "-append")).toBe("console=ttyS0 panic=-1 init=/sbin/x -- single");
  });

  test("a -netdev with net-user's egress guestfwd relays (spaces and dashes inside) is one value", () => {
    const argv = [...ARGV];
    const netdev = "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:27819-:22,guestfwd=tcp:10.0.2.100:3128-cmd:socat -lf /tmp/bb-x/vms/fd6c/egress-relay.log FD:0,,shut-down UNIX-CONNECT:/tmp/bb-x/vms/fd6c/egress-proxy.sock";
    argv[argv.indexOf("-netdev") + 1] = netdev;
    const back = parseQemuLogArgv(`# ${argv.join(" ")}\n`);
    expect(back).toEqual(argv);
    expect(argvValue(rewriteQemuArgv(back, { disk: "/d", sshPort: 31000, serialLog: "/s", qmpSock: "/q", pidfile: "/p" }), "-netdev")).toBe(netdev.replace("27819", "31000"));
  });

  test("no header or no qemu binary is an error", () => {
    expect(() => parseQemuLogArgv("qemu: oops\n")).toThrow("header");
    expect(() => parseQemuLogArgv("# /bin/sh -c x\n")).toThrow("qemu binary");
  });
});

describe("rewriteQemuArgv", () => {
  const r = { disk: "/tmp/raw/disk-0.img", sshPort: 31000, serialLog: "/tmp/raw/serial-0.log", qmpSock: "/tmp/raw/q0.sock", pidfile: "/tmp/raw/q0.pid", initrd: "/tmp/raw/initrd.img" };

  test("swaps only the per-VM resources and keeps every other word", () => {
    const out = rewriteQemuArgv(ARGV, r);
    expect(out).toHaveLength(ARGV.length);
    expect(argvValue(out, "-name")).toBe("bench-raw");
    expect(argvValue(out, "-serial")).toBe("file:/tmp/raw/serial-0.log");
    expect(argvValue(out, "-initrd")).toBe("/tmp/raw/initrd.img");
    expect(argvValue(out, "-drive")).toBe("id=disk0,file=/tmp/raw/disk-0.img,format=raw,if=none,cache=unsafe,discard=unmap");
    expect(argvValue(out, "-netdev")).toBe("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:31000-:22");
    expect(argvValue(out, "-qmp")).toBe("unix:/tmp/raw/q0.sock,server=on,wait=off");
    expect(argvValue(out, "-pidfile")).toBe("/tmp/raw/q0.pid");
    const changed = out.map((w, i) => (w === ARGV[i] ? null : i)).filter((i) => i !== null);
    expect(changed).toHaveLength(7);
    expect(argvValue(out, "-accel")).toBe("tcg,tb-size=64");
    expect(argvValue(out, "-append")).toBe(argvValue(ARGV, "-append"));
  });

  test("escaped commas in a path stay one value; a new path with commas is escaped", () => {
    const argv = [...ARGV];
    argv[argv.indexOf("-drive") + 1] = "id=disk0,file=/a,,b/system.img,format=raw";
    const out = rewriteQemuArgv(argv, { ...r, disk: "/x,y.img" });
    expect(argvValue(out, "-drive")).toBe("id=disk0,file=/x,,y.img,format=raw");
  });

  test("the original argv is not modified", () => {
    const copy = [...ARGV];
    rewriteQemuArgv(ARGV, r);
    expect(ARGV).toEqual(copy);
  });

  test("an argv without what a raw boot rewrites is refused", () => {
    const noNet = ARGV.filter((_, i) => i !== ARGV.indexOf("-netdev") && i !== ARGV.indexOf("-netdev") + 1);
    expect(() => rewriteQemuArgv(noNet, r)).toThrow("-netdev");
  });
});
