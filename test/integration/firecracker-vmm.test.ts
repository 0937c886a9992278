// dist/banger with the built-in firecracker plugin: how --vmm is chosen and
// refused, and a whole create → start → stop → delete through the daemon
// with the spec-checked fake firecracker standing in for the binary
// (BANGER_FIRECRACKER_BIN) and BANGER_ACCEL=kvm standing in for a usable
// /dev/kvm; one test checks the default the real probe gives on this host
// (no BANGER_ACCEL, the real PATH). Firecracker VMs are on tap networking,
// so withFc's CLI and daemon run inside a network namespace this test creates:
// the bridge, tap and hosts entry are made there, never on the machine.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { alive, BANGER, ROOT, tempHome, killAndWait } from "../helpers/cli.ts";
import { firecrackerOnHost, kvmLook } from "../helpers/host-kvm.ts";
import { IS_ROOT, needs } from "../helpers/skip.ts";

const dir = mkdtempSync(join(tmpdir(), "bfv-"));
const kernel = join(dir, "vmlinuz");
const rootfs = join(dir, "rootfs.ext4");
const fakeFc = join(dir, "firecracker");
writeFileSync(kernel, "not a kernel");
writeFileSync(rootfs, Buffer.alloc(1 << 20));
writeFileSync(fakeFc, `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(join(ROOT, "test/fixtures/fake-firecracker.ts"))} "$@"\n`);
chmodSync(fakeFc, 0o755);

// a PATH without any firecracker on it (a host may have one in /usr/local/bin, as the README says)
const PATH_NO_FC = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  .split(":")
  .filter((d) => !Bun.which("firecracker", { PATH: d }))
  .join(":");
// banger also looks in /usr/sbin and /sbin whatever PATH says: a firecracker there is hidden by naming a binary that is nowhere
const FC_MISSING = Bun.which("firecracker", { PATH: "/usr/sbin:/sbin" }) ? "firecracker-not-installed" : "";
const plain = tempHome("bfv-plain-");
const NS = `bfv-${process.pid}`;
const inNs = (...cmd: string[]) => Bun.spawnSync(["ip", "netns", "exec", NS, ...cmd], { stdin: "ignore" });
const withFc = tempHome("bfv-fc-", { wrap: ["ip", "netns", "exec", NS] });
const noKvm = tempHome("bfv-nokvm-");
const probed = tempHome("bfv-probed-");
const vmPids: number[] = [];
const envPlain = { PATH: PATH_NO_FC, BANGER_FIRECRACKER_BIN: FC_MISSING };
const envFc = { PATH: PATH_NO_FC, BANGER_FIRECRACKER_BIN: fakeFc, BANGER_ACCEL: "kvm" };
// BANGER_ACCEL=tcg: KVM unusable on any machine (here /dev/kvm is kvm_pvm anyway; CI runners may have a real one)
const envNoKvm = { PATH: PATH_NO_FC, BANGER_FIRECRACKER_BIN: fakeFc, BANGER_ACCEL: "tcg" };

beforeAll(() => {
  expect(existsSync(BANGER)).toBe(true);
  if (IS_ROOT) {
    Bun.spawnSync(["ip", "netns", "del", NS]);
    // must exist before the first `ip netns exec`, or the daemon would see (and edit) the machine's /etc/hosts
    mkdirSync(`/etc/netns/${NS}`, { recursive: true });
    writeFileSync(`/etc/netns/${NS}/hosts`, "127.0.0.1\tlocalhost\n");
    expect(Bun.spawnSync(["ip", "netns", "add", NS]).exitCode).toBe(0);
  }
  for (const [h, env] of [[plain, envPlain], ...(IS_ROOT ? [[withFc, envFc] as const] : []), [noKvm, envNoKvm]] as const) {
    const r = h.run(["image", "import", "--name", "tiny", "--kernel", kernel, "--rootfs", rootfs, "--json"], env);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
  }
});

afterAll(async () => {
  for (const h of [plain, withFc, noKvm, probed]) await h.cleanup(vmPids);
  rmSync(dir, { recursive: true, force: true });
  if (IS_ROOT) {
    Bun.spawnSync(["ip", "netns", "del", NS]);
    rmSync(`/etc/netns/${NS}`, { recursive: true, force: true });
  }
});

describe("--vmm choice", () => {
  test("no firecracker on PATH: default is qemu; --vmm firecracker is one line, exit 2, naming what is missing", () => {
    const d = plain.run(["vm", "create", "a", "--image", "tiny", "--json"], envPlain);
    expect(d.code).toBe(0);
    expect(d.json().spec.driver).toBe("qemu");
    const r = plain.run(["vm", "create", "b", "--image", "tiny", "--vmm", "firecracker"], envPlain);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^banger: vmm firecracker cannot run on this host: firecracker(-not-installed)? not found on PATH.*\n$/);
    expect(r.stderr.split("\n").filter(Boolean).length).toBe(1);
    const j = plain.run(["vm", "create", "b", "--image", "tiny", "--vmm", "firecracker", "--json"], envPlain);
    expect(j.json().error.code).toBe("E_BAD_REQUEST");
    expect(plain.run(["vm", "create", "c", "--image", "tiny", "--vmm", "xen"], envPlain).stderr).toBe('banger: unknown vmm "xen" (loaded: qemu, firecracker)\n');
  });

  test("firecracker found but KVM not usable: default qemu, --vmm firecracker says why", () => {
    const d = noKvm.run(["vm", "create", "a", "--image", "tiny", "--json"], envNoKvm);
    expect(d.json().spec.driver).toBe("qemu");
    const r = noKvm.run(["vm", "create", "b", "--image", "tiny", "--vmm", "firecracker"], envNoKvm);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe("banger: vmm firecracker cannot run on this host: BANGER_ACCEL=tcg forces software emulation (TCG)\n");
  });

  test("this host's own default follows the probe: firecracker only with a firecracker binary and usable KVM", () => {
    // a daemon of its own, started with the real PATH and no BANGER_ACCEL (a daemon keeps the environment it started with);
    // --net user tells the two apart without touching the network: firecracker refuses it
    const env = { PATH: process.env.PATH ?? "", BANGER_FIRECRACKER_BIN: "", BANGER_ACCEL: "" };
    expect(probed.run(["image", "import", "--name", "tiny", "--kernel", kernel, "--rootfs", rootfs, "--json"], env).code).toBe(0);
    const r = probed.run(["vm", "create", "probed", "--image", "tiny", "--net", "user", "--json"], env);
    if (firecrackerOnHost() && kvmLook().usable) {
      expect([r.code, r.json().error.message]).toEqual([2, "firecracker cannot use --net user (it supports: tap)"]);
    } else {
      expect(r.code).toBe(0);
      expect(r.json().spec.driver).toBe("qemu");
    }
  });

  needs(IS_ROOT, "needs root (the firecracker VM's tap lives in a network namespace this test makes)").test("firecracker and KVM usable: firecracker is the default (on --net tap) and is stored in the VM record; --vmm qemu still wins; --net user is refused", () => {
    // --egress all: this test is about the VMM, not the egress firewall (test/e2e/net-tap.test.ts)
    const d = withFc.run(["vm", "create", "fc1", "--image", "tiny", "--egress", "all", "--json"], envFc);
    expect(d.code).toBe(0);
    expect(d.json().spec.driver).toBe("firecracker");
    expect(d.json().spec.net).toBe("tap");
    const u = withFc.run(["vm", "create", "fcu", "--image", "tiny", "--net", "user"], envFc);
    expect([u.code, u.stderr]).toEqual([2, "banger: firecracker cannot use --net user (it supports: tap)\n"]);
    expect(withFc.run(["vm", "show", "fc1", "--json"], envFc).json().spec.driver).toBe("firecracker");
    expect(withFc.run(["vm", "create", "q1", "--image", "tiny", "--vmm", "qemu", "--json"], envFc).json().spec.driver).toBe("qemu");
  });
});

needs(IS_ROOT, "needs root (tap networking in a test network namespace)").describe("a firecracker VM through the daemon (fake firecracker)", () => {
  test("an image without vmlinux: start fails with the one fix, nothing left running", () => {
    const r = withFc.run(["vm", "start", "fc1"], envFc);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("firecracker needs an uncompressed vmlinux");
    expect(r.stderr).toContain("banger image build");
    expect(withFc.run(["vm", "show", "fc1", "--json"], envFc).json().alive).toBe(false);
  });

  test("start → running (full API sequence), stop → SendCtrlAltDel, process gone, socket removed; delete", () => {
    writeFileSync(join(withFc.home, "images", "tiny", "vmlinux"), "ELF stand-in");
    const s = withFc.run(["vm", "start", "fc1", "--json"], envFc);
    expect(s.stderr).toBe("");
    expect(s.code).toBe(0);
    const v = withFc.run(["vm", "show", "fc1", "--json"], envFc).json();
    expect(v.alive).toBe(true);
    expect(v.runtime.state).toBe("running");
    vmPids.push(v.pid);
    const cmdline = readFileSync(`/proc/${v.pid}/cmdline`, "utf8").split("\0");
    expect(cmdline).toContain("--api-sock");
    expect(cmdline).toContain(join(v.runtime.vmDir, "api.sock"));
    const calls = readFileSync(join(v.runtime.vmDir, "fake-fc.requests.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    const config = calls.filter((c) => c.method !== "GET");
    expect(config.map((c) => `${c.method} ${c.path} ${c.status}`)).toEqual([
      "PUT /logger 204",
      "PUT /metrics 204",
      "PUT /machine-config 204",
      "PUT /boot-source 204",
      "PUT /drives/rootfs 204",
      "PUT /network-interfaces/eth0 204",
      "PUT /vsock 204",
      "PUT /actions 204",
    ]);
    const boot = config.find((c) => c.path === "/boot-source").body;
    expect(boot.kernel_image_path).toBe(join(withFc.home, "images", "tiny", "vmlinux"));
    // the record's vsock (set at create by the plugin) is what Firecracker was given
    expect(v.runtime.vsockCID).toBeGreaterThanOrEqual(3);
    expect(config.find((c) => c.path === "/vsock").body).toEqual({ guest_cid: v.runtime.vsockCID, uds_path: v.runtime.vsockPath });
    expect(boot.boot_args).toContain("reboot=k panic=1 pci=off");
    // the imported image has no initrd: initrd_path is left out, not sent empty
    expect("initrd_path" in boot).toBe(false);
    expect(config.find((c) => c.path === "/drives/rootfs").body.path_on_host).toBe(join(v.runtime.vmDir, "system.img"));
    // the net-tap plugin's tap, made inside the test's namespace, is what Firecracker was given
    const nic = config.find((c) => c.path === "/network-interfaces/eth0").body;
    expect(nic.host_dev_name).toBe(`bt-${v.id.slice(0, 12)}`);
    expect(inNs("ip", "link", "show", "dev", nic.host_dev_name).exitCode).toBe(0);
    expect(readFileSync(`/etc/netns/${NS}/hosts`, "utf8")).toContain(`${v.runtime.guestIP}\tfc1.vm`);

    // kill -9 of the daemon never touches the VM; the next daemon finds it again by its API socket
    killAndWait(withFc.daemonPid());
    const after = withFc.run(["vm", "show", "fc1", "--json"], envFc).json();
    expect([after.alive, after.pid, after.runtime.state]).toEqual([true, v.pid, "running"]);

    const stop = withFc.run(["vm", "stop", "fc1", "--json"], envFc);
    expect(stop.code).toBe(0);
    expect(stop.json().runtime.state).toBe("stopped");
    expect(alive(v.pid)).toBe(false);
    expect(existsSync(join(v.runtime.vmDir, "api.sock"))).toBe(false);
    const last = readFileSync(join(v.runtime.vmDir, "fake-fc.requests.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).at(-1);
    expect(last).toMatchObject({ method: "PUT", path: "/actions", body: { action_type: "SendCtrlAltDel" }, status: 204 });

    // a second start works although firecracker left its socket behind on the first run's exit
    const again = withFc.run(["vm", "start", "fc1", "--json"], envFc);
    expect(again.code).toBe(0);
    const v2 = withFc.run(["vm", "show", "fc1", "--json"], envFc).json();
    vmPids.push(v2.pid);
    expect(v2.alive).toBe(true);
    const del = withFc.run(["vm", "delete", "fc1", "--json"], envFc);
    expect(del.code).toBe(0);
    expect(alive(v2.pid)).toBe(false);
    expect(existsSync(v.runtime.vmDir)).toBe(false);
    expect(inNs("ip", "link", "show", "dev", nic.host_dev_name).exitCode).not.toBe(0);
    expect(readFileSync(`/etc/netns/${NS}/hosts`, "utf8")).not.toContain("fc1.vm");
  }, 60_000);
});
