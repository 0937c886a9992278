// vm pause / resume through dist/banger: the fake VMM (a node process that
// flips a paused flag like a VMM stopping its vCPUs) with a real sshd on
// 127.0.0.1 as the guest, so exec, ssh and sessions are refused for real.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { BANGER, killAndWait } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { guestLogin } from "../helpers/sshd.ts";

const g = fakeGuestVM("banger-pause-");
const { h, run } = g;

beforeAll(() => g.start(), 30_000);
afterAll(() => g.cleanup());

const PAUSED = "banger: vm box is paused: resume it with `banger vm resume box`\n";
const show = () => run(["vm", "show", "box", "--json"]).json<{ runtime: { state: string; apiSockPath: string }; alive: boolean; pid: number; halted?: string }>();

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

/** One line to the fake VM's API socket (what its VMM would do on its own), its answer. */
async function tellVM(msg: string): Promise<string> {
  const sock = show().runtime.apiSockPath;
  return new Promise((resolve, reject) => {
    let got = "";
    const c = connect(sock, () => c.write(`${msg}\n`));
    c.on("data", (d) => (got += d.toString()));
    c.on("end", () => resolve(got.trim()));
    c.on("error", reject);
  });
}

guestLogin.test("halted by its VMM (a write to a full host disk): list and show say so; exec, ssh and session send are one line naming vm resume; an exec running when it halts ends within seconds saying why; resume while still full is refused, once space is back it runs on", async () => {
  const HALTED = "banger: vm box is halted: the fake VMM stopped its guest: a write to its disk found no space left on the host's filesystem; free space there, then `banger vm resume box`: it runs on from where it stopped\n";
  // a command the halt catches midway: it would otherwise wait on a guest that cannot answer (an exec agent's 30 s ping, SSH's keepalive)
  const started = Date.now();
  const exec = Bun.spawn([BANGER, "vm", "exec", "box", "--", "sleep", "29.5"], { env: { ...h.env, ...g.env }, stdout: "pipe", stderr: "pipe" });
  // …and a follow of a session's output (as attach does), which would wait for output that never comes
  expect(run(["session", "start", "box", "--name", "quiet", "--", "sleep", "29.4"]).code).toBe(0);
  const follow = Bun.spawn([BANGER, "session", "logs", "box", "quiet", "-f"], { env: { ...h.env, ...g.env }, stdout: "pipe", stderr: "pipe" });
  // …and an interactive shell, whose SSH would notice only at its keepalive (this test's guest is a real sshd: it would run on)
  const shell = Bun.spawn([BANGER, "vm", "ssh", "box"], { env: { ...h.env, ...g.env }, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  await Bun.sleep(800);
  expect(await tellVM("ioerror sticky")).toBe("ok ioerror");
  const halted = Date.now();
  expect(await exec.exited).toBe(1);
  const tookMs = Date.now() - halted;
  console.log(`exec ended ${tookMs} ms after the halt (watched every 2 s), ${Date.now() - started} ms in all`);
  expect(tookMs).toBeLessThan(5000);
  expect(await new Response(exec.stderr).text()).toBe(HALTED);
  expect(await follow.exited).toBe(1);
  const followMs = Date.now() - halted;
  console.log(`session logs -f ended ${followMs} ms after the halt`);
  expect(followMs).toBeLessThan(5000);
  expect(await new Response(follow.stderr).text()).toBe(HALTED);
  expect(await shell.exited).toBe(1);
  const shellMs = Date.now() - halted;
  console.log(`vm ssh (interactive) ended ${shellMs} ms after the halt`);
  expect(shellMs).toBeLessThan(5000);
  expect(await new Response(shell.stderr).text()).toBe(HALTED);
  // this test's guest is OpenSSH, which refuses root's sessions a signal: the cut command runs on here (a real guest's dropbear or exec agent ends it)
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      if (cmd === "sleep\u000029.5\u0000" || cmd === "sleep\u000029.4\u0000") process.kill(Number(pid), "SIGKILL");
    } catch {}
  }

  expect(show()).toMatchObject({ alive: true, runtime: { state: "running" }, halted: "the fake VMM stopped its guest: a write to its disk found no space left on the host's filesystem" });
  expect(run(["vm", "list"]).stdout).toMatch(/^box +halted +yes /m);
  expect(run(["vm", "show", "box"]).stdout).toContain("state:     halted (alive, pid");
  for (const args of [["vm", "exec", "box", "--", "true"], ["vm", "ssh", "box"], ["session", "send", "box", "agent"]]) {
    const r = run(args, "x\n");
    expect([args.join(" "), r.code, r.stderr]).toEqual([args.join(" "), 1, HALTED]);
  }
  // still full: the VMM halts it again at once, and resume says so
  const again = run(["vm", "resume", "box"]);
  expect(again).toMatchObject({ code: 1, stderr: expect.stringMatching(/^banger: vm box is halted again at once: .*no space left.*; the cause is still there\n$/) });
  expect(show().halted).toBeDefined();
  // space back
  expect(await tellVM("ioerror")).toBe("ok ioerror");
  expect(run(["vm", "resume", "box"])).toMatchObject({ code: 0, stdout: "box is running\n" });
  expect(show().halted).toBeUndefined();
  expect(run(["vm", "exec", "box", "--", "true"]).code).toBe(0);
  expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("vm box: resuming it, halted by its VMM (the fake VMM stopped its guest");
}, 30_000);

test("stop of a paused VM stops it", () => {
  expect(run(["vm", "pause", "box"]).code).toBe(0);
  const r = run(["vm", "stop", "box", "--json"]);
  expect(r.code).toBe(0);
  expect(r.json()).toMatchObject({ alive: false, runtime: { state: "stopped" } });
  expect(run(["vm", "resume", "box"]).code).toBe(1);
});
