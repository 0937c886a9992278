// `--egress` and `banger vm egress` through dist/banger with fake VMs
// (test/fixtures/fake-vmm-plugin.ts) and a user's policy-source plugin
// (test/fixtures/egress-source-plugin.ts): storage, the config default, bad
// input, live changes reaching the enforcer, plugin sources, and re-applying
// after the daemon is killed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { FAKE_PLUGIN, ROOT, tempHome, killAndWait } from "../helpers/cli.ts";

const h = tempHome("banger-egress-cli-");
const PLUGINS = `${FAKE_PLUGIN}:${join(ROOT, "test/fixtures/egress-source-plugin.ts")}`;
const run = (args: string[]) => h.run(args, { BANGER_PLUGINS: PLUGINS });
const applied = () =>
  existsSync(join(h.home, "egress-applied.jsonl"))
    ? readFileSync(join(h.home, "egress-applied.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { vm: string; policy: string; pid: number })
    : [];
const vmPids: number[] = [];

beforeAll(() => {
  writeFileSync(join(h.home, "kernel"), "not a kernel");
  writeFileSync(join(h.home, "rootfs"), Buffer.alloc(1 << 20));
  writeFileSync(join(h.home, "config.json"), JSON.stringify({ egress: "Pkgs.Example.org:443" }));
  expect(run(["image", "import", "--name", "default", "--kernel", join(h.home, "kernel"), "--rootfs", join(h.home, "rootfs"), "--json"]).code).toBe(0);
});
afterAll(async () => {
  await h.cleanup(vmPids);
});

describe("vm egress through the CLI", () => {
  test("config.json's egress is the default; --egress overrides it; vm show prints it", () => {
    const a = run(["vm", "create", "a", "--driver", "fake", "--json"]);
    expect(a.code).toBe(0);
    expect(a.json().spec.egress).toBe("pkgs.example.org:443");
    const b = run(["vm", "create", "b", "--driver", "fake", "--egress", "*.example.com, 198.51.100.0/24:22", "--json"]);
    expect(b.json().spec.egress).toBe("*.example.com,198.51.100.0/24:22");
    expect(run(["vm", "show", "b"]).stdout).toContain("egress:    *.example.com,198.51.100.0/24:22");
  });

  test.each(["a.com;id", "$(reboot).com", "'x'", "all,none", "1.2.3.4/99", "a.com\nb.com"])("--egress %j: one line, exit 2, no VM", (bad) => {
    const r = run(["vm", "create", "c", "--driver", "fake", "--egress", bad]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toStartWith("banger: invalid egress");
    expect(run(["vm", "show", "c"]).code).toBe(1);
  });

  test("a running VM: the enforcer gets the effective policy (plugin entries added) at start and at once on a change; a stopped one keeps it for its next start", () => {
    writeFileSync(join(h.home, "extra-allow.txt"), "mirror.example.net\n");
    const s = run(["vm", "start", "a", "--json"]);
    expect(s.code).toBe(0);
    vmPids.push(s.json().pid);
    expect(applied().at(-1)).toMatchObject({ vm: "a", policy: "pkgs.example.org:443,mirror.example.net" });
    expect(applied().at(-1)!.pid).toBeGreaterThan(0);

    const set = run(["vm", "egress", "a", "git.example.com:22", "--json"]);
    expect(set.code).toBe(0);
    const v = set.json<{ vm: string; policy: string; effective: string; denied: number; appliedMs: number }>();
    expect(v).toMatchObject({ vm: "a", policy: "git.example.com:22", effective: "git.example.com:22,mirror.example.net", denied: 0 });
    expect(v.appliedMs).toBeLessThan(100);
    expect(applied().at(-1)).toMatchObject({ vm: "a", policy: "git.example.com:22,mirror.example.net" });

    const human = run(["vm", "egress", "a"]);
    expect(human.stdout).toBe("policy:    git.example.com:22\neffective: git.example.com:22,mirror.example.net (with plugin sources)\ndenied:    0\n");

    const n = applied().length;
    const stopped = run(["vm", "egress", "b", "none", "--json"]);
    expect(stopped.json()).toMatchObject({ policy: "none", effective: "mirror.example.net" });
    expect(stopped.json().appliedMs).toBeUndefined();
    expect(applied().length).toBe(n);
    // a CIDR that opens the host's own ranges is taken, with a warning naming them (0.0.0.0/0 is more than all)
    const wide = run(["vm", "egress", "b", "0.0.0.0/0"]);
    expect([wide.code, wide.stderr.split("\n").filter((l) => l.startsWith("banger:"))]).toEqual([0, [expect.stringMatching(/^banger: --egress 0\.0\.0\.0\/0 opens 127\.0\.0\.0\/8 \(the host's loopback\), .*192\.168\.0\.0\/16 \(private\) to the guest/)]]);
    expect(run(["vm", "egress", "b", "none"]).code).toBe(0);
  });

  test("after kill -9 of the daemon, the next one re-applies the stored policy to the VM it re-adopts", () => {
    const n = applied().length;
    killAndWait(h.daemonPid());
    expect(run(["vm", "list", "--json"]).code).toBe(0);
    expect(applied().slice(n)).toEqual([expect.objectContaining({ vm: "a", policy: "git.example.com:22,mirror.example.net" })]);
  });

  test("errors: a missing VM is exit 1, a bad policy exit 2 and changes nothing", () => {
    const missing = run(["vm", "egress", "nope"]);
    expect([missing.code, missing.stderr]).toEqual([1, "banger: vm not found: nope\n"]);
    const bad = run(["vm", "egress", "a", "*.com"]);
    expect(bad.code).toBe(2);
    expect(run(["vm", "egress", "a", "--json"]).json().policy).toBe("git.example.com:22");
  });
});
