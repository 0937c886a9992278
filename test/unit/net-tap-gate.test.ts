// net-tap's gate and drop log, the parts that need no kernel: the conntrack
// lookup that recovers a redirected connection's destination, the nft JSON
// of a drop set, the poller's diffing, and what the scripts do with hostile
// ports.
import { describe, expect, test } from "bun:test";
import { originalDstIn } from "../../plugins/net-tap/conntrack.ts";
import { DropLog, dropReason, parseDropSet } from "../../plugins/net-tap/drop-log.ts";
import { gatedPorts, listScript } from "../../plugins/net-tap/egress-list.ts";
import { parseEgress, type EgressRule } from "../../src/shared/egress.ts";
import { fakeExec, fakeHost } from "../helpers/fakes.ts";

const CT = [
  // another guest's redirected connection, same source port
  "ipv4     2 tcp      6 431999 ESTABLISHED src=10.213.0.3 dst=198.51.100.20 sport=40000 dport=443 src=10.213.0.1 dst=10.213.0.3 sport=15301 dport=40000 [ASSURED] mark=0 zone=0 use=2",
  // the guest's own connection, not redirected (NAT only): the reply comes from the server
  "ipv4     2 tcp      6 431999 ESTABLISHED src=10.213.0.2 dst=198.51.100.10 sport=40000 dport=22 src=198.51.100.10 dst=192.0.2.1 sport=22 dport=40000 [ASSURED] mark=0 zone=0 use=2",
  "ipv4     2 udp      17 20 src=10.213.0.2 dst=10.213.0.1 sport=40000 dport=53 src=10.213.0.1 dst=10.213.0.2 sport=53 dport=40000 mark=0 zone=0 use=2",
  "ipv4     2 tcp      6 59 SYN_RECV src=10.213.0.2 dst=198.51.100.10 sport=40000 dport=443 src=10.213.0.1 dst=10.213.0.2 sport=15301 dport=40000 mark=0 zone=0 use=2",
].join("\n");

describe("conntrack: where a redirected connection was going", () => {
  test("the entry from the guest's address and port whose reply comes from the gate's port", () => {
    expect(originalDstIn(CT, "10.213.0.2", 40000, 15301)).toEqual({ ip: "198.51.100.10", port: 443 });
    expect(originalDstIn(CT, "10.213.0.3", 40000, 15301)).toEqual({ ip: "198.51.100.20", port: 443 });
  });

  test("no entry, another gate port, a partial or garbled line: null (the gate then closes the connection)", () => {
    expect(originalDstIn(CT, "10.213.0.2", 40001, 15301)).toBeNull();
    expect(originalDstIn(CT, "10.213.0.2", 40000, 15302)).toBeNull();
    expect(originalDstIn("", "10.213.0.2", 40000, 15301)).toBeNull();
    expect(originalDstIn("ipv4 2 tcp 6 59 src=10.213.0.2 dst=198.51.100.10 sport=40000", "10.213.0.2", 40000, 15301)).toBeNull();
    // a source in the reply tuple that is not the guest: not a redirect to it
    expect(originalDstIn(CT.replace("dst=10.213.0.2 sport=15301", "dst=10.213.0.9 sport=15301"), "10.213.0.2", 40000, 15301)).toBeNull();
    expect(originalDstIn("ipv4 2 tcp 6 59 SYN_RECV src=10.213.0.2 dst=not-an-ip sport=1 dport=443 src=10.213.0.1 dst=10.213.0.2 sport=15301 dport=1", "10.213.0.2", 1, 15301)).toBeNull();
  });
});

const SET_JSON = (elems: [string, string, number, number][]) =>
  JSON.stringify({
    nftables: [
      { metainfo: { version: "1.0.6" } },
      { set: { family: "inet", name: "dl_id0001", table: "banger_egress", type: ["ipv4_addr", "inet_proto", "inet_service"], elem: elems.map(([a, p, port, packets]) => ({ elem: { val: { concat: [a, p, port] }, expires: 3000, counter: { packets, bytes: 60 * packets } } })) } },
    ],
  });

describe("the drop log", () => {
  test("nft's JSON of a drop set: destination, protocol, port, packets; anything else is skipped", () => {
    expect(parseDropSet(SET_JSON([["198.51.100.20", "tcp", 22, 2], ["198.51.100.53", "udp", 53, 1]]))).toEqual([
      { dest: "198.51.100.20", proto: "tcp", port: 22, packets: 2 },
      { dest: "198.51.100.53", proto: "udp", port: 53, packets: 1 },
    ]);
    expect(parseDropSet("not json")).toEqual([]);
    expect(parseDropSet(JSON.stringify({ nftables: [{ set: { elem: [{ elem: { val: "1.2.3.4" } }, { elem: { val: { concat: ["1.2.3.4", "tcp"] } } }] } }] }))).toEqual([]);
    expect(dropReason({ dest: "198.51.100.53", proto: "udp", port: 53, packets: 1 }, "10.213.0.1", 1)).toBe("DNS to another server than the bridge resolver (udp, 1 packet, dropped by the firewall)");
    expect(dropReason({ dest: "10.213.0.1", proto: "tcp", port: 22, packets: 3 }, "10.213.0.1", 3)).toBe("the host itself (tcp, 3 packets, dropped by the firewall)");
  });

  test("each poll logs what is new or grew since the last one; a VM no longer watched is not asked about", async () => {
    const host = fakeHost();
    const exec = fakeExec();
    let set = SET_JSON([["198.51.100.20", "tcp", 22, 2]]);
    exec.on("nft", () => ({ exitCode: 0, stdout: set, stderr: "" }));
    const logged: string[] = [];
    const drops = new DropLog({ exec, clock: host.clock, resolverIp: () => "10.213.0.1", log: async (ip, d) => void logged.push(`${ip} ${d.dest}:${d.port} ${d.reason}`), pollMs: 3_600_000 });
    drops.watch("vm1", "10.213.0.2", "bt-id0001");
    await drops.pollAll();
    expect(exec.runs.at(-1)!.args).toEqual(["-j", "list", "table", "inet", "banger_egress"]);
    await drops.pollAll();
    set = SET_JSON([["198.51.100.20", "tcp", 22, 5], ["198.51.100.53", "udp", 53, 1]]);
    await drops.pollAll();
    // timed out and back with fewer packets than last seen: those are new
    set = SET_JSON([["198.51.100.20", "tcp", 22, 1]]);
    await drops.pollAll();
    expect(logged).toEqual([
      "10.213.0.2 198.51.100.20:22 address not allowed (tcp, 2 packets, dropped by the firewall)",
      "10.213.0.2 198.51.100.20:22 address not allowed (tcp, 3 packets, dropped by the firewall)",
      "10.213.0.2 198.51.100.53:53 DNS to another server than the bridge resolver (udp, 1 packet, dropped by the firewall)",
      "10.213.0.2 198.51.100.20:22 address not allowed (tcp, 1 packet, dropped by the firewall)",
    ]);
    const n = exec.runs.length;
    drops.unwatch("vm1");
    await drops.pollAll();
    expect(exec.runs.length).toBe(n);
    expect(() => drops.watch("vm2", "10.213.0.3", 'bt-x"; flush ruleset')).toThrow("bad tap name");
  });
});

describe("the deny log of cut-off VMs (the shared set dl4, by source)", () => {
  const SHARED = (elems: [string, string, string, number, number][]) =>
    JSON.stringify({ nftables: [{ set: { name: "dl4", elem: elems.map(([f, a, p, port, packets]) => ({ elem: { val: { concat: [f, a, p, port] }, counter: { packets, bytes: 1 } } })) } }] });

  test("a VM's own attempts only, and none that were in the set before it was watched", async () => {
    const host = fakeHost();
    const exec = fakeExec();
    let set = SHARED([["10.213.0.2", "198.51.100.20", "tcp", 22, 4], ["10.213.0.3", "198.51.100.20", "tcp", 22, 1]]);
    exec.on("nft", () => ({ exitCode: 0, stdout: set, stderr: "" }));
    const logged: string[] = [];
    const drops = new DropLog({ exec, clock: host.clock, resolverIp: () => "10.213.0.1", log: async (ip, d) => void logged.push(`${ip} ${d.dest}:${d.port}`), pollMs: 3_600_000 });
    expect(parseDropSet(set)[0]).toEqual({ from: "10.213.0.2", dest: "198.51.100.20", proto: "tcp", port: 22, packets: 4 });
    drops.watchDenied("vm1", "10.213.0.2");
    await drops.settled();
    await drops.pollAll();
    expect(logged).toEqual([]);
    set = SHARED([["10.213.0.2", "198.51.100.20", "tcp", 22, 5], ["10.213.0.2", "198.51.100.53", "udp", 53, 1], ["10.213.0.3", "198.51.100.30", "tcp", 443, 1]]);
    await drops.pollAll();
    expect(logged).toEqual(["10.213.0.2 198.51.100.20:22", "10.213.0.2 198.51.100.53:53"]);
    // one nft call a poll for every VM together (an allowlisted one's own set is in the same table)
    const n = exec.runs.length;
    drops.watchDenied("vm2", "10.213.0.3");
    drops.watch("vm3", "10.213.0.4", "bt-id0003");
    await drops.pollAll();
    expect(exec.runs.length - n).toBe(2);
    drops.unwatch("vm1");
    drops.unwatch("vm2");
    drops.unwatch("vm3");
  });
});

describe("the redirect rules", () => {
  const rules = (t: string) => (parseEgress(t) as { rules: EgressRule[] }).rules;

  test("web ports always; a port a domain rule names too; a CIDR's port is no reason to redirect", () => {
    expect(gatedPorts(rules("pkgs.example.test"))).toEqual([80, 443]);
    expect(gatedPorts(rules("git.example.test:22,*.example.com:8443,git.example.test:443,198.51.100.0/24:25"))).toEqual([22, 80, 443, 8443]);
    expect(listScript("10.213.0.2", "bt-id0001", "10.213.0.1", rules("git.example.test:22"), 4000)).toContain("add rule inet banger_egress r_id0001 tcp dport { 22, 80, 443 } redirect to :4000\n");
  });

  test("a hostile gate port or rule port cannot become nft syntax", () => {
    for (const bad of ["15301 ; flush ruleset", 0, 70000, 1.5, Number.NaN]) {
      expect(() => listScript("10.213.0.2", "bt-id0001", "10.213.0.1", [], bad as number)).toThrow("not a port");
      expect(() => gatedPorts([{ kind: "domain", name: "a.example.test", wildcard: false, port: bad as number }])).toThrow("not a port");
    }
    expect(() => listScript("10.213.0.2", "bt-id0001", "10.213.0.1 } ; flush ruleset", [])).toThrow("not an IPv4 address");
  });
});
