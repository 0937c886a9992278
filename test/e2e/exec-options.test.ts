// -e/-w/-u/--timeout and vm run's generated name, in one real QEMU guest
// shared by every test here (booted once, by the first test).
import { afterAll, expect, test } from "bun:test";
import { BANGER, waitFor } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

e2e.describe("vm exec options in a real VM", () => {
  const h = e2eReady ? e2eHome("banger-e2e-xo-") : (null as never);
  let vm = "";
  afterAll(async () => {
    if (!h) return;
    if (vm) h.run(["vm", "delete", vm, "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });

  test("vm run without --name prints a generated name, and the VM answers to it", () => {
    const r = h.run(["vm", "run", "--vmm", "qemu", "--", "uname", "-s"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("Linux\n");
    const m = /^vm name: ([a-z]+-[a-z]+)$/m.exec(r.stderr);
    expect(m).not.toBeNull();
    vm = m![1]!;
    const shown = h.run(["vm", "show", vm, "--json"]);
    expect(shown.code).toBe(0);
    expect(shown.json().alive).toBe(true);
  }, 300_000);

  test("-e, -w and -u are what the command sees (env, pwd, id -un), hostile values intact", () => {
    expect(vm).not.toBe("");
    const value = "it's; $(id) `x`\nline two";
    const r = h.run(["vm", "exec", vm, "-e", `GREETING=${value}`, "-w", "/tmp", "-u", "nobody", "--", "bash", "-c", 'printf "%s|%s|%s" "$GREETING" "$(pwd)" "$(id -un)"']);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${value}|/tmp|nobody`);
    const missing = h.run(["vm", "exec", vm, "-w", "/no/such", "--", "true"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe("banger: no such directory in the guest: /no/such\n");
  }, 60_000);

  test("--timeout 2s -- sleep 30: exit 124 within 3 s (on a loaded machine: 1 s past the timeout plus one plain exec), no sleep left in the guest, the next exec works", () => {
    expect(vm).not.toBe("");
    // what any exec costs right now (CLI, daemon, SSH channel, guest shell): on a machine shared with other VMs it alone can pass 1 s
    const b0 = performance.now();
    expect(h.run(["vm", "exec", vm, "--", "true"]).code).toBe(0);
    const baseline = (performance.now() - b0) / 1000;
    const t0 = performance.now();
    const r = h.run(["vm", "exec", vm, "--timeout", "2s", "--", "sleep", "30"]);
    const secs = (performance.now() - t0) / 1000;
    console.log(`vm exec --timeout 2s -- sleep 30: exit ${r.code} after ${secs.toFixed(2)} s (vm exec -- true just before: ${baseline.toFixed(2)} s)`);
    expect(r.code).toBe(124);
    // 3 s on a quiet machine (exec ~0.2 s); never more than 1 s beyond the timeout plus one exec's cost
    expect(secs).toBeLessThan(Math.max(3, 2 + baseline + 1));
    // every process's command line, its NUL-separated args joined by spaces (bash builtins: a tr per process costs seconds under TCG)
    const ps = h.run(["vm", "exec", vm, "--", "bash", "-c", 'for f in /proc/[0-9]*/cmdline; do mapfile -d "" a 2>/dev/null < "$f"; echo "${a[*]}"; done']);
    expect(ps.code).toBe(0);
    expect(ps.stdout).toContain("bash -c");
    expect(ps.stdout.split("\n").filter((l) => l.trim() === "sleep 30")).toEqual([]);
    const next = h.run(["vm", "exec", vm, "--", "echo", "still here"]);
    expect(next.code).toBe(0);
    expect(next.stdout).toBe("still here\n");
  }, 60_000);

  test("Ctrl-C goes on to the command, which cleans up: its output and exit code are the CLI's (bare and --timeout); a second one ends the CLI (130) and the command is killed, a --timeout one too", async () => {
    expect(vm).not.toBe("");
    /** Start `vm exec`, wait for its "ready", send the CLI SIGINT; then the rest of its output and its exit. */
    const interrupted = async (args: string[]) => {
      const p = Bun.spawn([BANGER, "vm", "exec", vm, ...args], { env: h.env, stdout: "pipe", stderr: "pipe" });
      const reader = p.stdout.getReader();
      let out = "";
      while (!out.includes("ready\n")) {
        const c = await reader.read();
        if (c.done) break;
        out += new TextDecoder().decode(c.value);
      }
      p.kill("SIGINT");
      return { p, rest: (async () => {
        for (let c = await reader.read(); !c.done; c = await reader.read()) out += new TextDecoder().decode(c.value);
        return out;
      })() };
    };
    const sleeping = () => {
      const ps = h.run(["vm", "exec", vm, "--", "bash", "-c", 'for f in /proc/[0-9]*/cmdline; do mapfile -d "" a 2>/dev/null < "$f"; echo "${a[*]}"; done']);
      return ps.stdout.split("\n").filter((l) => l.trim() === "sleep 1234").length;
    };
    for (const opts of [[], ["--timeout", "1h"]]) {
      const { p, rest } = await interrupted([...opts, "--", "bash", "-c", "trap 'echo cleaned up; exit 7' INT; echo ready; while :; do sleep 0.1; done"]);
      expect({ opts, code: await p.exited, out: await rest, err: await new Response(p.stderr).text() }).toEqual({ opts, code: 7, out: "ready\ncleaned up\n", err: "" });
    }
    for (const opts of [[], ["--timeout", "1h"]]) {
      // INT ignored, and so by the program it execs
      const { p } = await interrupted([...opts, "--", "bash", "-c", "trap '' INT; echo ready; exec sleep 1234"]);
      await Bun.sleep(500);
      expect(p.exitCode).toBeNull();
      expect(sleeping()).toBe(1);
      p.kill("SIGINT");
      expect({ opts, code: await p.exited }).toEqual({ opts, code: 130 });
      // the --timeout wrapper's watchdog looks each second
      expect(await waitFor(() => sleeping() === 0, 10_000, 500)).toBe(true);
    }
  }, 120_000);

  test("session start with -e, -u and --timeout: the process sees them, and ends with exit 124", async () => {
    expect(vm).not.toBe("");
    const s = h.run(["session", "start", vm, "--name", "timed", "--stdin", "closed", "-e", "X=a b", "-u", "nobody", "-w", "/tmp", "--timeout", "2s", "--", "bash", "-c", 'echo "$X|$(id -un)|$PWD"; sleep 30']);
    expect(s.stderr).toBe("");
    expect(s.code).toBe(0);
    expect(await waitFor(() => h.run(["session", "show", vm, "timed", "--json"]).json().exitCode === 124, 20_000, 500)).toBe(true);
    expect(h.run(["session", "logs", vm, "timed"]).stdout).toBe("a b|nobody|/tmp\n");
  }, 60_000);
});
