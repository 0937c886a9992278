import { afterEach, describe, expect, test } from "bun:test";
import { addressVerdict, formatEgress, nameAllowed, parseEgress, parseEgressEntry, withEntries } from "../../src/shared/egress.ts";
import { BangerError } from "../../src/shared/errors.ts";
import { caught, engineWorld, type TestStore } from "../helpers/fakes.ts";

describe("parseEgress", () => {
  test("none, all and a list round-trip to one canonical text", () => {
    expect(formatEgress(parseEgress(" NONE "))).toBe("none");
    expect(formatEgress(parseEgress("all"))).toBe("all");
    const p = parseEgress("Pkgs.Example.org, *.example.com:443,198.51.100.7/24,203.0.113.9:22,pkgs.example.org.");
    expect(formatEgress(p)).toBe("pkgs.example.org,*.example.com:443,198.51.100.0/24,203.0.113.9:22");
  });

  test.each([
    ["", "empty"],
    ["a,,b", "empty entry"],
    ["none,a.com", "cannot be part"],
    ["a.com:0", "port"],
    ["a.com:70000", "port"],
    ["1.2.3.4/33", "prefix"],
    ["300.1.1.1", "not an IPv4"],
    ["::1", "IPv6"],
    ["[2001:db8::1]:443", "IPv6"],
    ["example.com:abc", "the port after : must be a number"],
    ["example.com:", "the port after : must be a number"],
    ["http://example.com", "a URL is not an entry"],
    ["a.com;rm -rf /", "not a domain"],
    ["$(id).com", "not a domain"],
    ["a.com\nb.com", "not a domain"],
    ["'a.com'", "not a domain"],
    ["*.com", "two labels"],
    ["-a.com", "not a domain"],
    ["exa mple.com", "not a domain"],
  ])("refuses %j with E_BAD_REQUEST (exit 2)", (text, why) => {
    let err: unknown;
    try {
      parseEgress(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BangerError);
    expect((err as BangerError).exitCode).toBe(2);
    expect((err as BangerError).message).toContain(why);
  });
});

describe("decisions", () => {
  const p = parseEgress("pkgs.example.org,*.example.com:443,198.51.100.0/28,10.1.2.3:5432");
  test("names: exact, wildcard (not the bare domain), ports", () => {
    expect(nameAllowed(p, "pkgs.example.org", 80)).toBe(true);
    expect(nameAllowed(p, "PKGS.example.org.", 443)).toBe(true);
    expect(nameAllowed(p, "evil.pkgs.example.org", 443)).toBe(false);
    expect(nameAllowed(p, "git.example.com", 443)).toBe(true);
    expect(nameAllowed(p, "git.example.com", 22)).toBe(false);
    expect(nameAllowed(p, "example.com", 443)).toBe(false);
    expect(nameAllowed(p, "notexample.com", 443)).toBe(false);
    expect(nameAllowed(parseEgress("none"), "a.com", 443)).toBe(false);
    expect(nameAllowed(parseEgress("all"), "a.com", 443)).toBe(true);
  });

  test("addresses: listed CIDRs, names' public answers, special ranges only when listed", () => {
    expect(addressVerdict(p, "198.51.100.9", 443, false)).toBeNull();
    expect(addressVerdict(p, "198.51.100.20", 443, false)).toBe("address not listed");
    expect(addressVerdict(p, "198.51.100.20", 443, true)).toBeNull();
    expect(addressVerdict(p, "10.1.2.3", 5432, false)).toBeNull();
    expect(addressVerdict(p, "10.1.2.3", 22, false)).toContain("private");
    for (const ip of ["127.0.0.1", "169.254.169.254", "10.0.2.2", "192.168.1.1", "172.17.0.1", "0.0.0.0", "224.0.0.1"]) {
      expect(addressVerdict(p, ip, 80, true)).toContain("private");
      expect(addressVerdict(parseEgress("all"), ip, 80, false)).toContain("private");
    }
    expect(addressVerdict(parseEgress("all"), "203.0.113.5", 80, false)).toBeNull();
    expect(addressVerdict(parseEgress("none"), "203.0.113.5", 80, true)).toBe("egress is none");
    expect(addressVerdict(p, "2001:db8::1", 443, true)).toContain("IPv6");
  });

  test("plugin entries widen none into a list and leave all alone", () => {
    const extra = [parseEgressEntry("a.example.org")];
    expect(formatEgress(withEntries(parseEgress("none"), extra))).toBe("a.example.org");
    expect(formatEgress(withEntries(parseEgress("all"), extra))).toBe("all");
    expect(formatEgress(withEntries(parseEgress("b.org,a.example.org"), extra))).toBe("b.org,a.example.org");
  });
});

describe("engine", () => {
  const stores: TestStore[] = [];
  afterEach(() => {
    while (stores.length) stores.pop()!.cleanup();
  });
  const world = () => {
    let n = 0;
    const w = engineWorld({ paths: { home: "/s", imagesDir: "/s/images", vmsDir: "/s/vms" }, newId: () => `id${++n}` });
    stores.push(w.ts);
    return w;
  };

  test("create stores the canonical policy (default none) and refuses a bad one before any work", async () => {
    const w = world();
    const e = w.make();
    expect((await e.create({ name: "a" })).spec.egress).toBe("none");
    expect((await e.create({ name: "b", egress: "X.org:443,1.2.3.4" })).spec.egress).toBe("x.org:443,1.2.3.4");
    expect(w.ts.store.getVM("b")!.spec.egress).toBe("x.org:443,1.2.3.4");
    const err = await caught(e.create({ name: "c", egress: "a.com;id" }));
    expect(err.code).toBe("E_BAD_REQUEST");
    expect(w.ts.store.getVM("c")).toBeNull();
  });

  test("start applies the effective policy (plugin sources included) once, after launch; a live change re-applies; a restart re-applies", async () => {
    const w = world();
    const e = w.make();
    const seen: string[] = [];
    w.hooks.hook("src", "vm:egress", ({ add }) => add("mirror.example.net"));
    w.hooks.hook("enf", "vm:egress:apply", ({ vm, policy, handles }) => void seen.push(`${vm.name} ${formatEgress(policy)} pid=${handles.pid > 0}`));
    await e.create({ name: "web", egress: "pkgs.example.org" });
    await e.start("web");
    expect(seen).toEqual(["web pkgs.example.org,mirror.example.net pid=true"]);
    const r = await e.setEgress("web", "all");
    expect(r.applied).toBe(true);
    expect(formatEgress(r.effective)).toBe("all");
    expect(w.ts.store.getVM("web")!.spec.egress).toBe("all");
    expect(seen.at(-1)).toBe("web all pid=true");
    await w.make().reconcile();
    expect(seen.at(-1)).toBe("web all pid=true");
    expect(seen.length).toBe(3);
  });

  test("a stopped VM's change is stored, not applied; an enforcer's refusal keeps the old policy", async () => {
    const w = world();
    const e = w.make();
    await e.create({ name: "web" });
    expect((await e.setEgress("web", "a.org")).applied).toBe(false);
    await e.start("web");
    w.hooks.hook("enf", "vm:egress:apply", ({ policy }) => {
      if (formatEgress(policy) === "b.org") throw new BangerError("E_STATE", "no");
    });
    const err = await caught(e.setEgress("web", "b.org"));
    expect(err.message).toContain("no");
    expect(w.ts.store.getVM("web")!.spec.egress).toBe("a.org");
    expect((await caught(e.setEgress("web", "1.2.3.4/40"))).code).toBe("E_BAD_REQUEST");
  });
});

describe("openedHostRanges: what a CIDR entry opens that `all` does not", () => {
  test("0.0.0.0/0 opens loopback, link-local and the private ranges; a public CIDR or names open none", async () => {
    const { openedHostRanges } = await import("../../src/shared/egress.ts");
    expect(openedHostRanges(parseEgress("0.0.0.0/0"))).toEqual(["127.0.0.0/8 (the host's loopback)", "169.254.0.0/16 (link-local, cloud metadata)", "10.0.0.0/8 (private)", "172.16.0.0/12 (private)", "192.168.0.0/16 (private)"]);
    expect(openedHostRanges(parseEgress("10.0.0.0/8,pkgs.example.test"))).toEqual(["10.0.0.0/8 (private)"]);
    expect(openedHostRanges(parseEgress("198.51.100.0/24,*.example.test"))).toEqual([]);
    expect(openedHostRanges(parseEgress("all"))).toEqual([]);
  });
});
