import { afterEach, expect } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IS_ROOT, needs } from "../helpers/skip.ts";
import { PerlExecAgent } from "../helpers/perl-exec-agent.ts";

// The exec agent's c (clock) and I (a restored guest's identity) frames, in a real perl, in private mount and
// UTS namespaces (and a PID one: its stand-in dropbear dies with it): /etc and root's HOME are overlays whose writes land in a temp dir (read here), /run is a
// tmpfs holding a stand-in dropbear's pid file, and the hostname is the namespace's. Setting the clock would
// move the host's: perl runs without CAP_SYS_TIME, so a clock_offset_ns is refused at its first step (the
// clock's moving is checked in a guest: test/e2e/snapshot.test.ts, clock within 0.2 s).
const it = needs(IS_ROOT && ["perl", "unshare", "setpriv", "mount"].every((t) => !!Bun.which(t)), "needs root, perl, unshare, setpriv and mount");

const HOME = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.split(":")[2] === "0")!.split(":")[5]!;

let dirs: string[] = [];
let agents: PerlExecAgent[] = [];
afterEach(async () => {
  for (const a of agents) {
    a.proc.stdin.end();
    await Promise.race([a.proc.exited, Bun.sleep(3000)]);
    a.proc.kill("SIGKILL");
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  agents = [];
  dirs = [];
});

/** An agent in its namespaces; `dropbearArgs`: the stand-in dropbear's argv (its pid in /run/dropbear.pid). */
function guest(dropbearArgs = "-F -E -s -R -p 22") {
  const d = mkdtempSync(join(tmpdir(), "banger-identity-"));
  dirs.push(d);
  const prelude = [
    "set -e",
    `for top in /etc ${HOME}; do n=$(echo "$top" | tr / _); mkdir -p "$D/up$n" "$D/work$n"; mount -t overlay overlay -o "lowerdir=$top,upperdir=$D/up$n,workdir=$D/work$n" "$top"; done`,
    `mkdir -p ${HOME}/.ssh`,
    "mount -t tmpfs tmpfs /run",
    "hostname parent-vm",
    // not exec'd into sleep by bash (the `; :`), so its cmdline is ours
    `bash -c 'sleep 600; :' dropbear ${dropbearArgs} </dev/null >/dev/null 2>&1 &`,
    'echo "$!" >/run/dropbear.pid',
    "set +e",
  ].join("\n");
  const a = new PerlExecAgent({ D: d, PATH: "/usr/sbin:/usr/bin:/sbin:/bin" }, undefined, { ns: ["-u", "--pid", "--fork", "--mount-proc"], prelude, dropCaps: ["sys_time"] });
  agents.push(a);
  const upper = (path: string) => join(d, path.startsWith(HOME) ? `up${HOME.replaceAll("/", "_")}` : "up_etc", path.startsWith(HOME) ? path.slice(HOME.length) : path.slice("/etc".length));
  return { a, upper };
}

const hex = (b: Uint8Array | string) => Buffer.from(b).toString("hex");

it.describe("the exec agent's clock and identity frames", () => {
  it.test("a ping asking `v` gets the protocol version (3) in its pong; a plain ping an empty one, as version 1's", async () => {
    const { a } = guest();
    a.send("p", "v1", "v");
    a.send("p", "v2");
    await a.until((fs) => fs.filter((f) => f.t === "p").length === 2);
    expect(a.frames.filter((f) => f.t === "p").map((f) => [f.id, f.data.toString()])).toEqual([
      ["v1", "3"],
      ["v2", ""],
    ]);
  });

  it.test("c answers with CLOCK_REALTIME as SECONDS.NANOSECONDS, the host's clock within the round trip", async () => {
    const { a } = guest();
    await a.ping("warm");
    const before = Date.now();
    a.send("c", "c1");
    await a.until((fs) => fs.some((f) => f.t === "c" && f.id === "c1"));
    const after = Date.now();
    const said = a.frames.find((f) => f.id === "c1")!.data.toString();
    expect(said).toMatch(/^\d+\.\d{9}$/);
    const ms = Number(said) * 1000;
    expect(ms).toBeGreaterThanOrEqual(before - 2);
    expect(ms).toBeLessThanOrEqual(after + 2);
  });

  it.test("I: hostname, root's authorized key and dropbear's host key written, the RNG reseeded from the entropy; x 0", async () => {
    const { a, upper } = guest();
    const hostKey = randomBytes(83);
    hostKey[5] = 0; // binary-clean: a NUL and newlines pass as hex
    hostKey[6] = 10;
    const fields = [`entropy ${hex(randomBytes(64))}`, `hostname ${hex("clone-1")}`, `authorized_key ${hex("ssh-ed25519 AAAAclone banger")}`, `host_key ${hex(hostKey)}`];
    a.send("I", "i1", fields.join("\n"));
    const r = await a.result("i1");
    expect([r.code, r.reason]).toEqual([0, null]);
    expect(readFileSync(upper("/etc/hostname"), "utf8")).toBe("clone-1\n");
    expect(readFileSync(upper(`${HOME}/.ssh/authorized_keys`), "utf8")).toBe("ssh-ed25519 AAAAclone banger\n");
    expect(statSync(upper(`${HOME}/.ssh/authorized_keys`)).mode & 0o777).toBe(0o600);
    expect(readFileSync(upper("/etc/dropbear/dropbear_ed25519_host_key")).equals(hostKey)).toBe(true);
    // the kernel's hostname, in the agent's UTS namespace; and the umask its commands get is as before
    const seen = await a.run("h1", "cat /proc/sys/kernel/hostname; umask");
    expect(seen.out.toString()).toBe("clone-1\n0022\n");
  });

  it.test("a long identity comes in a frames before I, as a long command line does", async () => {
    const { a, upper } = guest();
    const fields = `hostname ${hex("long-one")}\nauthorized_key ${hex("ssh-ed25519 " + "A".repeat(3000) + " banger")}`;
    a.send("a", "i2", fields.slice(0, 3500));
    a.send("I", "i2", fields.slice(3500));
    expect((await a.result("i2")).code).toBe(0);
    expect(readFileSync(upper("/etc/hostname"), "utf8")).toBe("long-one\n");
    expect(readFileSync(upper(`${HOME}/.ssh/authorized_keys`), "utf8")).toContain("A".repeat(3000));
  });

  it.test("the clock first: an offset the guest may not apply (no CAP_SYS_TIME) is r with the step, and nothing after it is applied", async () => {
    const { a, upper } = guest();
    a.send("I", "i3", [`clock_offset_ns -1500000000`, `hostname ${hex("never")}`].join("\n"));
    const r = await a.result("i3");
    expect(r.code).toBeNull();
    expect(r.reason).toBe("setting the clock: clock_settime: Operation not permitted");
    expect(() => readFileSync(upper("/etc/hostname"))).toThrow();
  });

  it.test("a dropbear without -R (it loaded its host key at start): r before anything is applied, so the host can go the shell's way", async () => {
    const { a, upper } = guest("-F -E -s -p 22");
    a.send("I", "i4", [`hostname ${hex("never")}`, `host_key ${hex("k")}`].join("\n"));
    const r = await a.result("i4");
    expect(r.reason).toBe("dropbear loads its host key once (no -R): not replaced here");
    expect(() => readFileSync(upper("/etc/hostname"))).toThrow();
    // without a host key to replace, dropbear's way does not matter
    a.send("I", "i5", `hostname ${hex("fine")}`);
    expect((await a.result("i5")).code).toBe(0);
    expect(readFileSync(upper("/etc/hostname"), "utf8")).toBe("fine\n");
  });

  it.test("hostile or malformed fields are refused whole: an unknown name, odd hex, a value with a shell word; the agent serves on", async () => {
    const { a, upper } = guest();
    for (const [n, bad] of [`nickname ${hex("x")}`, "hostname abc", `hostname ${hex("x")}; reboot`, "clock_offset_ns 12x", `hostname ${hex("a")}\nhostname`].entries()) {
      a.send("I", `b${n}`, bad);
      expect((await a.result(`b${n}`)).reason).toBe("identity: a malformed line");
    }
    expect(() => readFileSync(upper("/etc/hostname"))).toThrow();
    expect((await a.run("after", "echo still-here")).out.toString()).toBe("still-here\n");
  });
});
