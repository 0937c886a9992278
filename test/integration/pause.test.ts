// vm pause / resume through dist/banger: the fake VMM (a node process that
// flips a paused flag like a VMM stopping its vCPUs) with a real sshd on
// 127.0.0.1 as the guest, so exec, ssh and sessions are refused for real.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { killAndWait } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { guestLogin } from "../helpers/sshd.ts";

const g = fakeGuestVM("banger-pause-");
const { h, run } = g;

beforeAll(() => g.start(), 30_000);
afterAll(() => g.cleanup());

const PAUSED = "banger: vm box is paused: resume it with `banger vm resume box`\n";
const show = () => run(["vm", "show", "box", "--json"]).json<{ runtime: { state: string }; alive: boolean; pid: number }>();

guestLogin.test("pause → exec, ssh, session send and start are one line naming vm resume; resume → they work again", () => {
  const s = run(["session", "start", "box", "--name", "agent", "--", "bash", "-c", "cat >/dev/null"]);
  expect(s.code).toBe(0);
  const paused = run(["vm", "pause", "box", "--json"]);
  expect(paused.code).toBe(0);
  expect(paused.json()).toMatchObject({ name: "box", alive: true, runtime: { state: "paused" } });
  expect(run(["vm", "pause", "box"]).stdout).toBe("box is paused\n"); // again: no-op, same answer
  for (const args of [["vm", "exec", "box", "--", "true"], ["vm", "ssh", "box"], ["session", "send", "box", "agent"], ["vm", "start", "box"]]) {
    const r = run(args, "x\n");
    expect([args.join(" "), r.code, r.stderr]).toEqual([args.join(" "), 1, PAUSED]);
  }
  // the session's record is left as it was (nothing could be learned from a frozen guest)
  expect(run(["session", "list", "box", "--json"]).json<{ name: string; status: string }[]>().find((x) => x.name === "agent")?.status).toBe("running");
  const resumed = run(["vm", "resume", "box", "--json"]);
  expect(resumed.code).toBe(0);
  expect(resumed.json().runtime.state).toBe("running");
  expect(run(["vm", "exec", "box", "--", "true"]).code).toBe(0);
  expect(run(["session", "send", "box", "agent"], "y\n").code).toBe(0);
});

test("bad input: missing VM, bad name, no name → one line, exit 1 / 2", () => {
  expect(run(["vm", "pause", "nope"])).toMatchObject({ code: 1, stderr: "banger: vm not found: nope\n" });
  expect(run(["vm", "resume", "Bad_Name"]).code).toBe(2);
  expect(run(["vm", "pause"]).code).toBe(2);
  const r = run(["vm", "resume", "nope", "--json"]);
  expect(r.code).toBe(1);
  expect(r.json().error.code).toBe("E_VM_NOT_FOUND");
});

test("kill -9 of the daemon while paused: the next daemon keeps it paused (same VM process), resume works", async () => {
  const pid = show().pid;
  expect(run(["vm", "pause", "box"]).code).toBe(0);
  killAndWait(h.daemonPid());
  expect(show()).toMatchObject({ alive: true, pid, runtime: { state: "paused" } });
  expect(run(["vm", "resume", "box"]).stdout).toBe("box is running\n");
  expect(show()).toMatchObject({ alive: true, pid, runtime: { state: "running" } });
});

test("stop of a paused VM stops it", () => {
  expect(run(["vm", "pause", "box"]).code).toBe(0);
  const r = run(["vm", "stop", "box", "--json"]);
  expect(r.code).toBe(0);
  expect(r.json()).toMatchObject({ alive: false, runtime: { state: "stopped" } });
  expect(run(["vm", "resume", "box"]).code).toBe(1);
});
