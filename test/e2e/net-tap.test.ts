// A real VM on --net tap. The CLI and the daemon it auto-starts run inside a
// network namespace this test creates (`ip netns exec`), so the bridge, the
// tap, the NAT rules and the hosts file (/etc/netns/<ns>/hosts, bind-mounted
// over /etc/hosts there) all live in that namespace and go with it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createServer, type AddressInfo } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type { EgressDenial } from "../../src/shared/egress.ts";
import { BANGER, tempHome, killAndWait } from "../helpers/cli.ts";
import { tmpdir } from "node:os";
import { mkdtempSync } from "node:fs";
import { e2e, e2eReady, IMAGE_DIR, qemuPidsUnder } from "../helpers/e2e.ts";
import { macFor, tapName } from "../../plugins/net-tap/subnet.ts";

const NS = `bge-${process.pid % 100000}`;
/** "Outside": a namespace reachable from the VM only through the test namespace's NAT. */
const OUT = `bgo-${process.pid % 100000}`;
const NS_HOSTS = `/etc/netns/${NS}/hosts`;
const ROOT = join(import.meta.dir, "../..");

/** A real TLS ClientHello naming `sni` (Bun's, TLS 1.2: ~160 bytes, where 1.3's key shares make ~1.5 KB and the guest's sshd takes a command of at most 9000), as printf escapes, for a guest without a TLS client to send. */
function clientHello(sni: string): Promise<string> {
  return new Promise((resolve) => {
    const srv = createServer((s) =>
      s.once("data", (d: Buffer) => {
        resolve([...d].map((b) => `\\x${b.toString(16).padStart(2, "0")}`).join(""));
        s.destroy();
        srv.close();
      }),
    );
    srv.listen(0, "127.0.0.1", () => tlsConnect({ host: "127.0.0.1", port: (srv.address() as AddressInfo).port, servername: sni, rejectUnauthorized: false, maxVersion: "TLSv1.2" }).on("error", () => {}));
  });
}

function inNs(args: string[], env?: Record<string, string>) {
  const p = Bun.spawnSync(["ip", "netns", "exec", NS, ...args], { env, stdin: "ignore" });
  return { code: p.exitCode ?? -1, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

e2e.describe("real VM on --net tap, inside a test network namespace", () => {
  const h = e2eReady ? tempHome("banger-e2e-tap-") : (null as never);
  const hostHostsBefore = e2eReady ? readFileSync("/etc/hosts", "utf8") : "";
  // allowed names are looked up at the outside's DNS server (test/fixtures/egress-outside.ts)
  const banger = (args: string[]) => inNs([BANGER, ...args], { ...h.env, BANGER_TAP_SUBNET: "10.213.9.0/24", BANGER_EGRESS_DNS: "198.51.100.53" });
  const outDir = e2eReady ? mkdtempSync(join(tmpdir(), "banger-e2e-tap-out-")) : "";
  let outside: ReturnType<typeof Bun.spawn> | undefined;

  beforeAll(() => {
    Bun.spawnSync(["ip", "netns", "del", NS]);
    expect(Bun.spawnSync(["ip", "netns", "add", NS]).exitCode).toBe(0);
    inNs(["ip", "link", "set", "lo", "up"]);
    // must exist before the first `ip netns exec`, or the daemon would see (and edit) the machine's /etc/hosts
    mkdirSync(`/etc/netns/${NS}`, { recursive: true });
    writeFileSync(NS_HOSTS, "127.0.0.1\tlocalhost\n");
    Bun.spawnSync(["ip", "netns", "del", OUT]);
    expect(Bun.spawnSync(["ip", "netns", "add", OUT]).exitCode).toBe(0);
    for (const cmd of [
      ["ip", "link", "add", "bge-out", "type", "veth", "peer", "name", "eth0", "netns", OUT],
      ["ip", "addr", "add", "198.51.100.1/24", "dev", "bge-out"],
      ["ip", "link", "set", "bge-out", "up"],
    ]) expect(inNs(cmd).code).toBe(0);
    for (const cmd of [
      ["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"],
      ["ip", "link", "set", "eth0", "up"],
      // the fake outside's DNS and web servers (HTTP on .10 .20 .30)
      ...["10", "20", "30", "53"].map((a) => ["ip", "addr", "add", `198.51.100.${a}/32`, "dev", "eth0"]),
    ]) expect(Bun.spawnSync(["ip", "netns", "exec", OUT, ...cmd]).exitCode).toBe(0);
    const names = "DNS:pkgs.example.test,DNS:other.example.test";
    expect(Bun.spawnSync(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=pkgs.example.test", "-addext", `subjectAltName=${names}`, "-keyout", join(outDir, "key.pem"), "-out", join(outDir, "cert.pem")], { stderr: "pipe" }).exitCode).toBe(0);
    outside = Bun.spawn(["ip", "netns", "exec", OUT, process.execPath, join(ROOT, "test/fixtures/egress-outside.ts"), outDir], { stdout: "pipe", stderr: "inherit" });
  });

  afterAll(async () => {
    if (!h) return;
    banger(["vm", "delete", "c1", "--force"]);
    banger(["vm", "delete", "k1", "--force"]);
    banger(["vm", "delete", "alpha", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
    Bun.spawnSync(["ip", "netns", "del", NS]);
    outside?.kill("SIGKILL");
    if (outside) await outside.exited;
    Bun.spawnSync(["ip", "netns", "del", OUT]);
    rmSync(`/etc/netns/${NS}`, { recursive: true, force: true });
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  test("boot over a tap, exec over the guest IP, egress through NAT, <name>.vm resolves, reconcile and delete leave no tap", async () => {
    const imp = banger(["image", "import", "--name", "default", "--kernel", join(IMAGE_DIR, "vmlinuz"), "--rootfs", join(IMAGE_DIR, "rootfs.ext4"), "--initrd", join(IMAGE_DIR, "initrd.img"), "--json"]);
    expect(imp.code).toBe(0);
    // the auto-started daemon must be in the test namespace, never in the machine's own
    const daemon = h.daemonPid();
    expect(readlinkSync(`/proc/${daemon}/ns/net`)).toBe(`net:[${statSync(`/run/netns/${NS}`).ino}]`);

    const t0 = performance.now();
    const created = banger(["vm", "create", "alpha", "--vmm", "qemu", "--net", "tap", "--egress", "all", "--publish", "8080:8080", "--start", "--json"]);
    const bootMs = Math.round(performance.now() - t0);
    expect(created.code).toBe(0);
    const vm = JSON.parse(created.stdout);
    expect(vm.spec.net).toBe("tap");
    expect(vm.runtime).toMatchObject({ guestIP: "10.213.9.2", sshHost: "10.213.9.2", sshPort: 22, dnsName: "alpha.vm" });
    console.log(`e2e net-tap: create --start ${bootMs} ms`);

    const t1 = performance.now();
    const ex = banger(["vm", "exec", "alpha", "--", "true"]);
    console.log(`e2e net-tap: first vm exec -- true ${Math.round(performance.now() - t1)} ms`);
    expect(ex.code).toBe(0);
    const addr = banger(["vm", "exec", "alpha", "--", "ip", "-4", "-o", "addr", "show", "dev", "eth0"]);
    expect(addr.stdout).toContain("inet 10.213.9.2/24");
    const route = banger(["vm", "exec", "alpha", "--", "ip", "route"]);
    expect(route.stdout).toContain("default via 10.213.9.1");

    const resolved = inNs(["getent", "hosts", "alpha.vm"]);
    expect(resolved.stdout.trim().split(/\s+/)).toEqual(["10.213.9.2", "alpha.vm"]);
    expect(inNs(["ping", "-c", "2", "-W", "3", "alpha.vm"]).stdout).toContain("2 received");

    // a published port on a tap VM needs no forward: reached at IP:PORT and alpha.vm:PORT (from inside the test namespace)
    expect(vm.spec.ports[0]).toMatchObject({ guestPort: 8080, boundPort: 0, reach: ["10.213.9.2:8080", "alpha.vm:8080"] });
    const SERVER = 'my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die; while (my $c = $s->accept) { print $c "hello-tap\\n"; close $c }';
    expect(banger(["session", "start", "alpha", "--name", "srv", "--", "perl", "-MIO::Socket::INET", "-e", SERVER]).code).toBe(0);
    const viaName = () => inNs(["bash", "-c", "exec 3<>/dev/tcp/alpha.vm/8080 && IFS= read -r -t 5 l <&3 && echo \"$l\""]).stdout.trim();
    let got = "";
    for (let i = 0; i < 20 && got !== "hello-tap"; i++) {
      got = viaName();
      if (got !== "hello-tap") await Bun.sleep(300);
    }
    expect(got).toBe("hello-tap");
    expect(banger(["vm", "port", "ls", "alpha"]).stdout).toContain("10.213.9.2:8080, alpha.vm:8080");

    const tap = inNs(["ip", "-o", "link", "show", "master", "banger0"]).stdout;
    expect(tap).toMatch(/bt-[0-9a-f]+/);

    const times: number[] = [];
    for (let i = 0; i < 11; i++) {
      const t = performance.now();
      expect(banger(["vm", "exec", "alpha", "--", "true"]).code).toBe(0);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    console.log(`e2e net-tap: vm exec -- true p50 ${Math.round(times[5]!)} ms (n=11, over the exec agent: no network in it)`);

    // a clone of the running VM: its own address and MAC (alpha's session server runs on in it), nothing of alpha's on its tap
    const tf = performance.now();
    const forked = banger(["vm", "fork", "alpha", "c1", "--json"]);
    const forkMs = Math.round(performance.now() - tf);
    expect(forked.code).toBe(0);
    const te = performance.now();
    expect(banger(["vm", "exec", "c1", "--", "true"]).code).toBe(0);
    console.log(`e2e net-tap: fork of a running tap VM ${forkMs} ms, then vm exec -- true ${Math.round(performance.now() - te)} ms`);
    const c1 = JSON.parse(banger(["vm", "show", "c1", "--json"]).stdout);
    expect(c1.runtime).toMatchObject({ guestIP: "10.213.9.3", sshHost: "10.213.9.3", dnsName: "c1.vm" });
    const nic = (name: string) => banger(["vm", "exec", name, "--", "bash", "-c", "ip -o -4 addr show dev eth0; ip -o link show dev eth0; ip route; hostname"]).stdout;
    const [nicC1, nicAlpha] = [nic("c1"), nic("alpha")];
    expect(nicC1).toContain("inet 10.213.9.3/24");
    expect(nicC1).not.toContain("10.213.9.2");
    expect(nicC1).toContain(`link/ether ${macFor(c1.id)} `);
    expect(nicC1).toContain("default via 10.213.9.1 dev eth0");
    expect(nicC1.trim().split("\n").at(-1)).toBe("c1");
    expect(nicAlpha).toContain("inet 10.213.9.2/24");
    expect(nicAlpha).toContain(`link/ether ${macFor(vm.id)} `);
    expect(inNs(["getent", "hosts", "c1.vm"]).stdout.trim().split(/\s+/)).toEqual(["10.213.9.3", "c1.vm"]);
    expect(inNs(["ping", "-c", "1", "-W", "3", "c1.vm"]).stdout).toContain("1 received");
    // on the bridge, each MAC behind its own VM's tap only (learned from what each sent: the clone's commands go
    // over the exec agent, so its first frames on the network are its answers to that ping)
    const fdb = inNs(["bridge", "fdb", "show", "br", "banger0"]).stdout;
    expect(fdb).toContain(`${macFor(vm.id)} dev ${tapName(vm.id)} `);
    expect(fdb).toContain(`${macFor(c1.id)} dev ${tapName(c1.id)} `);
    expect(fdb).not.toContain(`${macFor(vm.id)} dev ${tapName(c1.id)} `);
    // guest to guest as the rule allows: the clone keeps its source's policy (all), its own to change, keyed to its own address and tap
    const dial = (target: string) => `if timeout 4 bash -c 'exec 3<>/dev/tcp/${target}/8080 && IFS= read -r -t 3 l <&3 && echo "$l"'; then :; else echo closed; fi`;
    expect(c1.spec.egress).toBe("all");
    expect(banger(["vm", "egress", "c1", "none"]).code).toBe(0);
    expect(banger(["vm", "exec", "alpha", "--", "bash", "-c", dial("10.213.9.3")]).stdout.trim()).toBe("hello-tap");
    expect(banger(["vm", "exec", "c1", "--", "bash", "-c", dial("10.213.9.2")]).stdout.trim()).toBe("closed");
    expect(banger(["vm", "egress", "c1", "all"]).code).toBe(0);
    expect(banger(["vm", "exec", "c1", "--", "bash", "-c", dial("10.213.9.2")]).stdout.trim()).toBe("hello-tap");
    // a tap VM's snapshot is saved as one whole stream (the VM stopped), then its RAM is split out into memory.ram:
    // the clone maps that file as any clone does, and a fork of the clone saves its RAM by delta; the grandchild has
    // its own address and name
    const daemonLog = () => readFileSync(join(h.home, "daemon.log"), "utf8");
    expect(daemonLog()).toContain("vm alpha: its snapshot's RAM split out of its stream:");
    expect(readFileSync(`/proc/${c1.pid}/cmdline`, "utf8").split("\0")).toContain(`memory-backend-file,id=pc.ram,size=256M,mem-path=${join(c1.runtime.vmDir, "restored.ram")},share=off`);
    const tg = performance.now();
    const grand = banger(["vm", "fork", "c1", "g1", "--json"]);
    expect(grand.code).toBe(0);
    console.log(`e2e net-tap: fork of a tap clone ${Math.round(performance.now() - tg)} ms, source frozen ${JSON.parse(grand.stdout).snapshot.freezeMs} ms`);
    expect(daemonLog()).toContain("vm c1: RAM saved by delta:");
    const g1 = JSON.parse(banger(["vm", "show", "g1", "--json"]).stdout);
    expect(g1.runtime.guestIP).not.toBe(c1.runtime.guestIP);
    expect(nic("g1")).toContain(`inet ${g1.runtime.guestIP}/24`);
    expect(nic("g1").trim().split("\n").at(-1)).toBe("g1");
    expect(banger(["vm", "delete", "g1", "--force", "--with-snapshots"]).code).toBe(0);
    expect(banger(["vm", "delete", "c1", "--force"]).code).toBe(0);
    expect(inNs(["ip", "-o", "link"]).stdout).not.toContain(tapName(c1.id));
    expect(inNs(["getent", "hosts", "c1.vm"]).code).not.toBe(0);
    expect(banger(["vm", "exec", "alpha", "--", "true"]).code).toBe(0);
    // the daemon killed (-9) while a clone's tap is off the bridge: the next one leaves no such tap and does not keep the clone
    const isolated = () => inNs(["ip", "-o", "link", "show"]).stdout.split("\n").filter((l) => / bt-[0-9a-f]+:/.test(l) && !l.includes(" master "));
    const forking = Bun.spawn(["ip", "netns", "exec", NS, BANGER, "vm", "fork", "alpha", "k1"], { env: { ...h.env, BANGER_TAP_SUBNET: "10.213.9.0/24" }, stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    let off = false;
    // LOWER_UP: QEMU holds the tap (the clone runs, its guest still at its parent's address)
    for (let i = 0; i < 2400 && !off; i++) {
      off = isolated().some((l) => l.includes("LOWER_UP"));
      if (!off) await Bun.sleep(25);
    }
    expect(off).toBe(true);
    killAndWait(h.daemonPid());
    await forking.exited;
    const k1 = JSON.parse(banger(["vm", "show", "k1", "--json"]).stdout);
    expect(k1.runtime.state).toBe("stopped");
    // the engine's mark of a start from a snapshot says it first (net-tap's own check, a tap off the bridge, would say it too)
    expect(k1.runtime.lastError).toBe("its start from a snapshot was cut short (the daemon stopped) before the guest got its own clock and identity: stopped, start it again");
    expect(isolated()).toEqual([]);
    expect(inNs(["ip", "-o", "link"]).stdout).not.toContain(tapName(k1.id));
    expect(banger(["vm", "delete", "k1", "--force"]).code).toBe(0);
    expect(qemuPidsUnder(h.home).length).toBe(1);

    // egress: the guest reaches a namespace it has no route to except through MASQUERADE, which sees the NAT address
    const echo = Bun.spawn(["ip", "netns", "exec", OUT, process.execPath, "-e",
      `Bun.listen({ hostname: "0.0.0.0", port: 8080, socket: { open(s) { s.write(s.remoteAddress + "\\n"); s.end(); }, data() {} } }); console.log("listening");`], { stdout: "pipe" });
    try {
      const reader = echo.stdout.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toContain("listening");
      const out = banger(["vm", "exec", "alpha", "--", "bash", "-c", "exec 3<>/dev/tcp/198.51.100.2/8080 && IFS= read -r -t 5 l <&3 && echo \"$l\""]);
      expect(out.stdout.trim()).toBe("198.51.100.1");

      // egress none, live: nftables cuts the guest off from the NAT and from the host (a listener on the test
      // namespace's side), also with a source address it made up; SSH to it still works; all lets it out again
      const host = Bun.spawn(["ip", "netns", "exec", NS, process.execPath, "-e",
        `Bun.listen({ hostname: "10.213.9.1", port: 8081, socket: { open(s) { s.write("host\\n"); s.end(); }, data() {} } }); console.log("listening");`], { stdout: "pipe" });
      try {
        expect(new TextDecoder().decode((await host.stdout.getReader().read()).value)).toContain("listening");
        const tryAll = String.raw`
          for t in 198.51.100.2/8080 10.213.9.1/8081; do
            if timeout 3 bash -c 'exec 3<>/dev/tcp/'"$t"' && IFS= read -r -t 2 l <&3 && [ -n "$l" ]'; then echo "$t open"; else echo "$t closed"; fi
          done
          ip addr add 10.213.9.77/24 dev eth0 && ip route replace default via 10.213.9.1 src 10.213.9.77
          if timeout 3 bash -c 'exec 3<>/dev/tcp/198.51.100.2/8080 && IFS= read -r -t 2 l <&3 && [ -n "$l" ]'; then echo "spoofed open"; else echo "spoofed closed"; fi
          ip route replace default via 10.213.9.1 src 10.213.9.2; ip addr del 10.213.9.77/24 dev eth0`;
        const none = banger(["vm", "egress", "alpha", "none", "--json"]);
        expect(none.code).toBe(0);
        console.log(`e2e net-tap: egress none applied in ${JSON.parse(none.stdout).appliedMs} ms`);
        expect(banger(["vm", "exec", "alpha", "--", "bash", "-c", tryAll]).stdout.trim().split("\n")).toEqual(["198.51.100.2/8080 closed", "10.213.9.1/8081 closed", "spoofed closed"]);
        expect(banger(["vm", "egress", "alpha", "all"]).code).toBe(0);
        expect(banger(["vm", "exec", "alpha", "--", "bash", "-c", tryAll]).stdout.trim().split("\n")).toEqual(["198.51.100.2/8080 open", "10.213.9.1/8081 open", "spoofed open"]);

        // an allowlist, live: the guest's resolver (the bridge) answers the allowed name and opens its address;
        // a raw unlisted IP, the outside's resolver (TCP, and a UDP question the outside must never see), the
        // host and a non-listed name stay closed; a second change applies to the next connection
        const reader = (outside!.stdout as ReadableStream<Uint8Array>).getReader();
        expect(new TextDecoder().decode((await reader.read()).value)).toContain("ready");
        reader.releaseLock();
        expect(banger(["vm", "exec", "alpha", "--", "cat", "/etc/resolv.conf"]).stdout).toContain("nameserver 10.213.9.1");
        const probe = (targets: string[]) => String.raw`
          p() { h=$2; [ -n "$h" ] || h=$(echo "$1" | cut -d/ -f1); if timeout 4 bash -c 'exec 3<>/dev/tcp/'"$1"' && printf "GET / HTTP/1.0\r\nHost: '"$h"'\r\n\r\n" >&3 && IFS= read -r -t 2 l <&3 && [ -n "$l" ]' 2>/dev/null; then echo "$1 open"; else echo "$1 closed"; fi; }
          for t in ${targets.join(" ")}; do p "$t"; done`;
        // the gate on the bridge reads the Host header of the guest's own connection: a lie about an allowed address is refused
        const lyingHost = String.raw`
          p 198.51.100.10/80 evil.example.net`;
        // and the SNI of its TLS: a real ClientHello sent raw; "open" when the server's first byte (its ServerHello) came back
        const tlsProbe = (ip: string, sni: string, hex: string) => String.raw`
          if timeout 4 bash -c 'exec 3<>/dev/tcp/${ip}/443 && printf "${hex}" >&3 && [ "$(timeout 3 head -c 1 <&3 | wc -c)" = 1 ]' 2>/dev/null; then echo "${sni}@${ip} open"; else echo "${sni}@${ip} closed"; fi`;
        const [helloPkgs, helloEvil] = [await clientHello("pkgs.example.test"), await clientHello("evil.example.net")];
        const sniProbes = tlsProbe("198.51.100.10", "pkgs.example.test", helloPkgs) + tlsProbe("198.51.100.10", "evil.example.net", helloEvil) + tlsProbe("198.51.100.30", "pkgs.example.test", helloPkgs);
        const list = banger(["vm", "egress", "alpha", "pkgs.example.test", "--json"]);
        expect(list.code).toBe(0);
        console.log(`e2e net-tap: allowlist applied in ${JSON.parse(list.stdout).appliedMs} ms`);
        const bypass = String.raw`
          if timeout 3 bash -c 'exec 3<>/dev/tcp/198.51.100.53/53' 2>/dev/null; then echo "dns-tcp open"; else echo "dns-tcp closed"; fi
          printf '\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05probe\x07example\x04test\x00\x00\x01\x00\x01' > /dev/udp/198.51.100.53/53
          if getent ahostsv4 other.example.test >/dev/null; then echo "other resolves"; else echo "other refused"; fi`;
        const t2 = performance.now();
        const first = banger(["vm", "exec", "alpha", "--", "bash", "-c", probe(["pkgs.example.test/80"])]);
        console.log(`e2e net-tap: first connection to an allowed name (resolve + set fill + HTTP) ${Math.round(performance.now() - t2)} ms incl. vm exec`);
        expect(first.stdout.trim()).toBe("pkgs.example.test/80 open");
        expect(banger(["vm", "exec", "alpha", "--", "bash", "-c", probe(["198.51.100.20/80", "10.213.9.1/8081", "198.51.100.2/8080"]) + bypass + lyingHost + sniProbes]).stdout.trim().split("\n")).toEqual([
          "198.51.100.20/80 closed", "10.213.9.1/8081 closed", "198.51.100.2/8080 closed", "dns-tcp closed", "other refused", "198.51.100.10/80 closed",
          "pkgs.example.test@198.51.100.10 open", "evil.example.net@198.51.100.10 closed", "pkgs.example.test@198.51.100.30 closed",
        ]);
        const live = banger(["vm", "egress", "alpha", "other.example.test", "--json"]);
        expect(live.code).toBe(0);
        console.log(`e2e net-tap: allowlist changed live in ${JSON.parse(live.stdout).appliedMs} ms`);
        expect(banger(["vm", "exec", "alpha", "--", "bash", "-c", probe(["other.example.test/80", "pkgs.example.test/80", "198.51.100.10/80"])]).stdout.trim().split("\n")).toEqual([
          "other.example.test/80 open", "pkgs.example.test/80 closed", "198.51.100.10/80 closed",
        ]);
        const seen = readFileSync(join(outDir, "seen.jsonl"), "utf8");
        expect(seen).not.toContain("probe.example.test");
        const log = JSON.parse(banger(["vm", "egress", "alpha", "--log", "--json"]).stdout) as { log: EgressDenial[] };
        expect(log.log).toEqual(expect.arrayContaining([expect.objectContaining({ dest: "other.example.test", via: "dns" }), expect.objectContaining({ dest: "pkgs.example.test", via: "dns" })]));
        // the gate's refusals (a raw address, the lying Host) and the firewall's drops (polled each second) in the same log
        expect(log.log).toEqual(expect.arrayContaining([
          expect.objectContaining({ dest: "198.51.100.10", via: "http", name: "evil.example.net", reason: "Host evil.example.net is not allowed" }),
          expect.objectContaining({ dest: "198.51.100.20", via: "http", reason: "address not listed" }),
          expect.objectContaining({ dest: "198.51.100.10", port: 443, via: "tls", name: "evil.example.net", reason: "SNI evil.example.net is not allowed" }),
          expect.objectContaining({ dest: "198.51.100.30", port: 443, via: "tls", name: "pkgs.example.test", reason: "SNI pkgs.example.test does not resolve to 198.51.100.30" }),
          expect.objectContaining({ dest: "198.51.100.2", port: 8080, via: "firewall" }),
          expect.objectContaining({ dest: "10.213.9.1", port: 8081, via: "firewall" }),
        ]));
        expect(seen).not.toContain("evil.example.net");
      } finally {
        host.kill();
      }
    } finally {
      echo.kill();
    }

    // the VM and the daemon die (kill -9); the next daemon's reconcile removes the tap
    const qemu = qemuPidsUnder(h.home);
    expect(qemu.length).toBe(1);
    killAndWait(h.daemonPid());
    process.kill(qemu[0]!, "SIGKILL");
    await Bun.sleep(300);
    const listed = banger(["vm", "list", "--json"]);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)[0].runtime.state).toBe("stopped");
    expect(readlinkSync(`/proc/${h.daemonPid()}/ns/net`)).toBe(`net:[${statSync(`/run/netns/${NS}`).ino}]`);
    expect(inNs(["ip", "-o", "link"]).stdout).not.toMatch(/bt-[0-9a-f]+/);
    // the name stays while the VM exists
    expect(inNs(["getent", "hosts", "alpha.vm"]).code).toBe(0);

    expect(banger(["vm", "delete", "alpha"]).code).toBe(0);
    expect(inNs(["ip", "-o", "link"]).stdout).not.toMatch(/bt-[0-9a-f]+/);
    expect(inNs(["getent", "hosts", "alpha.vm"]).code).not.toBe(0);
    // the machine's own hosts file was never touched
    expect(readFileSync("/etc/hosts", "utf8")).toBe(hostHostsBefore);
  }, 300_000);
});
