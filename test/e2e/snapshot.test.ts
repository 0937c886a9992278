// Pause, resume (and later snapshots) on a real QEMU guest; one VM shared by the tests of this file.
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { killAndWait } from "../helpers/cli.ts";
import { e2e, e2eHome, e2eReady, qemuPidsUnder } from "../helpers/e2e.ts";

const BOOT = 240_000;
// one line every 0.1 s of guest time
const COUNTER = "i=0; while :; do i=$((i+1)); echo $i; sleep 0.1; done";

e2e.describe("pause and resume (QEMU)", () => {
  const h = e2eReady ? e2eHome("banger-e2e-snap-") : (null as never);
  const api = (method: string, path: string) => fetch(`http://banger${path}`, { method, body: method === "POST" ? "{}" : undefined, unix: join(h.home, "bangerd.sock") } as RequestInit);
  afterAll(async () => {
    if (!h) return;
    h.run(["vm", "delete", "snapbox", "--force"]);
    await h.cleanup(qemuPidsUnder(h.home));
  });
  const ok = (args: string[]) => {
    const r = h.run(args);
    if (r.code !== 0) throw new Error(`banger ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
    return r;
  };
  let logPath = "";
  /** The counter's last value and the guest's uptime (s), read in one exec. */
  const sample = () => {
    const out = ok(["vm", "exec", "snapbox", "--", "sh", "-c", "cut -d' ' -f1 /proc/uptime; tail -n1 \"$1\"", "x", logPath]).stdout.trim().split("\n");
    return { uptime: Number(out[0]), count: Number(out[1]) };
  };

  test("boot, start a counting session", () => {
    ok(["vm", "create", "snapbox", "--vmm", "qemu", "--start"]);
    const s = ok(["session", "start", "snapbox", "--name", "counter", "--json", "--", "bash", "-c", COUNTER]).json();
    expect(s.status).toBe("running");
    logPath = s.stdoutLogPath;
  }, BOOT);

  test("pause: the guest's clock and counter stop while the wall clock runs; resume: both go on; the round trip is timed", async () => {
    await Bun.sleep(1000);
    const tA = performance.now();
    const before = sample();
    expect(before.count).toBeGreaterThan(0);
    const t0 = performance.now();
    const paused = ok(["vm", "pause", "snapbox", "--json"]).json();
    expect(paused.runtime.state).toBe("paused");
    // refused, not hung: one line naming the way out
    const refused = h.run(["vm", "exec", "snapbox", "--", "true"]);
    expect([refused.code, refused.stderr]).toEqual([1, "banger: vm snapbox is paused: resume it with `banger vm resume snapbox`\n"]);
    await Bun.sleep(3000);
    ok(["vm", "resume", "snapbox"]);
    const wall = (performance.now() - t0) / 1000;
    const after = sample();
    const between = (performance.now() - tA) / 1000;
    const guest = after.uptime - before.uptime;
    console.log(`paused ${wall.toFixed(2)} s; between the two reads ${between.toFixed(2)} s of wall time, guest uptime advanced ${guest.toFixed(2)} s, counter ${before.count} → ${after.count}`);
    // the 3 s of pause never reached the guest (its clock stood still)
    expect(between - guest).toBeGreaterThan(2.5);
    expect(after.count - before.count).toBeLessThanOrEqual(Math.ceil(guest / 0.1) + 2);
    await Bun.sleep(1500);
    expect(sample().count).toBeGreaterThan(after.count);

    // P8d: pause → resume through the API, as the daemon serves it
    const rounds: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      expect((await api("POST", "/v1/vms/snapbox/pause")).status).toBe(200);
      expect((await api("POST", "/v1/vms/snapbox/resume")).status).toBe(200);
      rounds.push(performance.now() - t);
    }
    rounds.sort((a, b) => a - b);
    console.log(`pause→resume round trip (API, n=10): median ${rounds[5]!.toFixed(1)} ms, max ${rounds[9]!.toFixed(1)} ms`);
    expect(ok(["vm", "show", "snapbox", "--json"]).json().runtime.state).toBe("running");
  }, BOOT);

  test("kill -9 of the daemon while paused: the next daemon keeps it paused (same qemu), resume brings the session back", async () => {
    const pid = ok(["vm", "show", "snapbox", "--json"]).json().pid;
    ok(["vm", "pause", "snapbox"]);
    killAndWait(h.daemonPid());
    expect(ok(["vm", "show", "snapbox", "--json"]).json()).toMatchObject({ alive: true, pid, runtime: { state: "paused" } });
    ok(["vm", "resume", "snapbox"]);
    const a = sample().count;
    await Bun.sleep(1500);
    expect(sample().count).toBeGreaterThan(a);
    expect(ok(["session", "show", "snapbox", "counter", "--json"]).json().status).toBe("running");
  }, BOOT);
});
