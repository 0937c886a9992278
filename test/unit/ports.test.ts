// Published ports and stats, below the daemon: the spec parser with hostile
// input, matching, net-user's monitor commands (a recording monitor), the
// `info usernet` and stats parsers on real output, and the tap provider's reach.
import { describe, expect, test } from "bun:test";
import { formatPort, matchPorts, parsePortSpec, portsColumn } from "../../src/shared/ports.ts";
import { parseUsernetForwards, userNetPorts } from "../../plugins/net-user/ports.ts";
import { tapPorts } from "../../plugins/net-tap/index.ts";
import { parseGuestStats, parsePidStat } from "../../src/daemon/stats.ts";
import { emptyHandles, type PublishedPort, type VMRecord } from "../../src/shared/model.ts";
import { BangerError } from "../../src/shared/errors.ts";

function vm(): VMRecord {
  return {
    id: "abc",
    name: "web",
    spec: { image: "default", cpus: 1, memoryMiB: 256, diskMiB: 0, workDiskMiB: 0, driver: "qemu", net: "user", storage: "copy" },
    runtime: {
      state: "running", guestIP: "10.213.0.5", apiSockPath: "/x/api.sock", vsockPath: "", vsockCID: 0, logPath: "", metricsPath: "",
      dnsName: "web.vm", vmDir: "/x", systemOverlay: "", workDiskPath: "", lastError: "", sshHost: "127.0.0.1", sshPort: 20022,
    },
    createdAt: "", updatedAt: "",
  };
}

describe("parsePortSpec", () => {
  test("docker's forms, with defaults", () => {
    expect(parsePortSpec("8080:80")).toEqual({ proto: "tcp", hostIP: "127.0.0.1", hostPort: 8080, guestPort: 80, boundPort: 0, reach: [] });
    expect(parsePortSpec("0.0.0.0:0:53/udp")).toMatchObject({ proto: "udp", hostIP: "0.0.0.0", hostPort: 0, guestPort: 53 });
    expect(parsePortSpec("80")).toMatchObject({ hostIP: "127.0.0.1", hostPort: 0, guestPort: 80 });
    expect(parsePortSpec("127.0.0.2:80")).toMatchObject({ hostIP: "127.0.0.2", hostPort: 0, guestPort: 80 });
    expect(parsePortSpec("1:65535/tcp")).toMatchObject({ hostPort: 1, guestPort: 65535 });
  });

  test("anything else is E_BAD_REQUEST with one line that quotes the input safely", () => {
    const hostile = ["", ":80", "80:", "70000:80", "80:0", "80:70000", "1.2.3.256:80:80", "1.2.3:80:80", "80/sctp", "80/TCP", "'", "80;id", "$(reboot):80", "`id`", "8080:80\nhostfwd_add n0 tcp::22-:22", "8080:80 ", "-1:80", "0x50:80", "８０:80", "a".repeat(10_000)];
    for (const s of hostile) {
      let err: unknown;
      try {
        parsePortSpec(s);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(BangerError);
      const e = err as BangerError;
      expect(e.code).toBe("E_BAD_REQUEST");
      expect(e.message).not.toContain("\n");
      expect(e.message.length).toBeLessThan(220);
    }
  });

  test("matchPorts: a guest port names every forward to it; a spec matches as asked or as bound", () => {
    const a = { ...parsePortSpec("0:80"), boundPort: 40001 };
    const b = { ...parsePortSpec("8080:80"), boundPort: 8080 };
    const c = { ...parsePortSpec("0:53/udp"), boundPort: 40002 };
    expect(matchPorts([a, b, c], "80")).toEqual([a, b]);
    expect(matchPorts([a, b, c], "80/tcp")).toEqual([a, b]);
    expect(matchPorts([a, b, c], "80/udp")).toEqual([]);
    expect(matchPorts([a, b, c], "53")).toEqual([c]);
    expect(matchPorts([a, b, c], "40001:80")).toEqual([a]);
    expect(matchPorts([a, b, c], "0:80")).toEqual([a]);
    expect(matchPorts([a, b, c], "127.0.0.1:8080:80/tcp")).toEqual([b]);
    expect(matchPorts([a, b, c], "40002:53")).toEqual([]); // tcp by default
    expect(matchPorts([a, b, c], "40002:53/udp")).toEqual([c]);
    expect(formatPort(a)).toBe("127.0.0.1:40001->80/tcp");
    expect(formatPort(parsePortSpec("0:80"))).toBe("127.0.0.1:0->80/tcp");
  });
});

describe("portsColumn (vm list's PORTS)", () => {
  const port = (spec: string, boundPort = 0): PublishedPort => ({ ...parsePortSpec(spec), boundPort });
  test("none is -; each is HOST→GUEST: the bound host port, else as asked, * before one is picked", () => {
    expect(portsColumn(undefined)).toBe("-");
    expect(portsColumn([])).toBe("-");
    expect(portsColumn([port("8080:80", 8080)])).toBe("8080→80");
    expect(portsColumn([port("8080:80")])).toBe("8080→80");
    expect(portsColumn([port("0:80", 41234), port("80")])).toBe("41234→80,*→80");
  });
  test("the host address only when it is not the default loopback one; /udp only for udp", () => {
    expect(portsColumn([port("0.0.0.0:8080:80", 8080), port("127.0.0.1:5353:53/udp", 5353), port("9000:90/tcp", 9000)])).toBe("0.0.0.0:8080→80,5353→53/udp,9000→90");
  });
});

describe("net-user ports (recording monitor)", () => {
  function setup(o: { said?: (line: string) => string; busy?: number[] } = {}) {
    const lines: string[] = [];
    const ports = userNetPorts({
      monitor: async (_vm, line) => {
        lines.push(line);
        return o.said?.(line) ?? "";
      },
      portFree: async (p) => !(o.busy ?? []).includes(p),
    });
    return { ports, lines };
  }

  test("open: hostfwd_add on the slirp netdev with only checked numbers and the address; close: hostfwd_remove of the bound port", async () => {
    const { ports, lines } = setup();
    const p = parsePortSpec("127.0.0.1:8080:80");
    await ports.open(vm(), emptyHandles(), p);
    expect([p.boundPort, p.reach]).toEqual([8080, ["127.0.0.1:8080"]]);
    const u = parsePortSpec("0:53/udp");
    await ports.open(vm(), emptyHandles(), u);
    expect(u.boundPort).toBeGreaterThan(0);
    await ports.close(vm(), emptyHandles(), p);
    expect(lines).toEqual(["hostfwd_add n0 tcp:127.0.0.1:8080-:80", `hostfwd_add n0 udp:127.0.0.1:${u.boundPort}-:53`, "hostfwd_remove n0 tcp:127.0.0.1:8080"]);
  });

  test("HOSTPORT 0 prefers the port it had last time, if it is still free", async () => {
    const { ports } = setup();
    const p: PublishedPort = { ...parsePortSpec("0:80"), boundPort: 31999 };
    await ports.open(vm(), emptyHandles(), p);
    expect(p.boundPort).toBe(31999);
    const { ports: busy } = setup({ busy: [31999] });
    const q: PublishedPort = { ...parsePortSpec("0:80"), boundPort: 31999 };
    await busy.open(vm(), emptyHandles(), q);
    expect(q.boundPort).not.toBe(31999);
  });

  test("a taken host port is E_PORT_IN_USE before QEMU is asked; QEMU's own refusal maps to the same", async () => {
    const { ports, lines } = setup({ busy: [8080] });
    const p = parsePortSpec("8080:80");
    await expect(ports.open(vm(), emptyHandles(), p)).rejects.toMatchObject({ code: "E_PORT_IN_USE", message: "host port 127.0.0.1:8080/tcp is in use (publishing guest port 80); pick another or use 0 for any" });
    expect(lines).toEqual([]);
    const q = setup({ said: () => "Could not set up host forwarding rule 'udp:127.0.0.1:5353-:53'\r\n" });
    await expect(q.ports.open(vm(), emptyHandles(), parsePortSpec("5353:53/udp"))).rejects.toMatchObject({ code: "E_PORT_IN_USE" });
    const other = setup({ said: () => "Invalid host forwarding rule\r\nmore" });
    await expect(other.ports.open(vm(), emptyHandles(), parsePortSpec("5354:53"))).rejects.toMatchObject({ code: "E_INTERNAL", message: expect.not.stringContaining("\n") });
  });

  test("an address this host does not have is said as such (bad input), not as a port in use; QEMU is not asked", async () => {
    const { ports, lines } = setup();
    // 192.0.2.1 (RFC 5737 documentation range): no host has it; a bind to it fails locally, nothing is sent
    await expect(ports.open(vm(), emptyHandles(), parsePortSpec("192.0.2.1:18083:80"))).rejects.toMatchObject({
      code: "E_BAD_REQUEST",
      message: "host address 192.0.2.1 is not one of this host's (publishing guest port 80): use 127.0.0.1, 0.0.0.0 or an address the host has",
    });
    expect(lines).toEqual([]);
  });

  test("a record with a bad address never reaches the monitor", async () => {
    const { ports, lines } = setup();
    const p: PublishedPort = { ...parsePortSpec("8080:80"), hostIP: "127.0.0.1:1-:22\nquit" };
    await expect(ports.open(vm(), emptyHandles(), p)).rejects.toMatchObject({ code: "E_BAD_REQUEST" });
    expect(lines).toEqual([]);
  });

  test("live: info usernet as QEMU 7.2 prints it", async () => {
    const text =
      "Hub -1 (n0):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n" +
      "  TCP[HOST_FORWARD]  13       127.0.0.1 28556       10.0.2.15    80     0     0\r\n" +
      "  TCP[HOST_FORWARD]   8       127.0.0.1 28555       10.0.2.15    22     0     0\r\n" +
      "  UDP[HOST_FORWARD]  14       127.0.0.1 28557       10.0.2.15    53     0     0\r\n" +
      "  TCP[ESTABLISHED]    15       10.0.2.15 41000       10.0.2.2    80     0     0\r\n";
    expect(parseUsernetForwards(text)).toEqual([
      { proto: "tcp", hostIP: "127.0.0.1", boundPort: 28556 },
      { proto: "tcp", hostIP: "127.0.0.1", boundPort: 28555 },
      { proto: "udp", hostIP: "127.0.0.1", boundPort: 28557 },
    ]);
    const { ports, lines } = setup({ said: () => text });
    expect(await ports.live!(vm(), emptyHandles())).toHaveLength(3);
    expect(lines).toEqual(["info usernet"]);
  });
});

test("tap ports: nothing forwarded, reached at the guest's address and <name>.vm", async () => {
  const p = parsePortSpec("8080:80");
  await tapPorts.open(vm(), emptyHandles(), p);
  expect([p.boundPort, p.reach]).toEqual([0, ["10.213.0.5:80", "web.vm:80"]]);
});

describe("stats parsers", () => {
  test("/proc/<pid>/stat: utime+stime and rss, with spaces and parens in the command name", () => {
    const stat = "4242 (qemu-system (x) 1) S 1 4242 4242 0 -1 4194560 12345 0 0 0 1500 250 0 0 20 0 5 0 98765 1234567890 65536 18446744073709551615";
    expect(parsePidStat(stat)).toEqual({ cpuTicks: 1750, rssBytes: 65536 * 4096 });
    expect(parsePidStat("garbage")).toBeNull();
  });

  test("stats.sh output: meminfo, uptime, df -kP /", () => {
    const out = [
      "MemTotal:         229160 kB", "MemFree:          150000 kB", "MemAvailable:     190000 kB", "Buffers:            1000 kB",
      "12345.67 20000.00",
      "Filesystem     1024-blocks   Used Available Capacity Mounted on", "/dev/vda          1015704 300000    650000      32% /",
    ].join("\n");
    expect(parseGuestStats(out)).toEqual({ memTotalBytes: 229160 * 1024, memUsedBytes: (229160 - 190000) * 1024, uptimeSeconds: 12345, diskSizeBytes: 1015704 * 1024, diskUsedBytes: 300000 * 1024 });
    expect(() => parseGuestStats("MemTotal: 1 kB\n")).toThrow(/unexpected stats output/);
    // a tick without df (it is read every few seconds): the disk fields are left for the cached ones
    const noDf = parseGuestStats(out.split("\nFilesystem")[0]!, false);
    expect([noDf.memTotalBytes, noDf.diskSizeBytes]).toEqual([229160 * 1024, NaN]);
    expect(() => parseGuestStats(out.split("\nFilesystem")[0]!, true)).toThrow(/unexpected stats output/);
  });
});
