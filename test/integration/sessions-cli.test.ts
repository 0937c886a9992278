// Sessions through dist/banger and its daemon, against a real sshd on
// 127.0.0.1 standing in for the guest: every CLI path, including send and
// attach across a kill -9 of the daemon.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BANGER, waitFor, killAndWait } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { guestLogin } from "../helpers/sshd.ts";

const g = fakeGuestVM("banger-sess-");
const { h, env, scratch, run } = g;

beforeAll(() => g.start(), 30_000);
afterAll(() => g.cleanup());

const AGENT = ["bash", "-c", 'while IFS= read -r l; do printf "got:%s\\n" "$l"; done'];

async function readUntil(proc: { stdout: ReadableStream<Uint8Array> }, want: string, acc: { text: string }, timeoutMs = 15_000) {
  const reader = proc.stdout.getReader();
  const end = Date.now() + timeoutMs;
  try {
    while (!acc.text.includes(want) && Date.now() < end) {
      const r = await Promise.race([reader.read(), Bun.sleep(end - Date.now()).then(() => ({ done: true, value: undefined }))]);
      if (r.done) break;
      acc.text += new TextDecoder().decode(r.value);
    }
  } finally {
    reader.releaseLock();
  }
  return acc.text.includes(want);
}

guestLogin.describe("session CLI over a real sshd", () => {
  test("preflight failures name their stage", () => {
    const cwd = run(["session", "start", "box", "--name", "nocwd", "--cwd", "/no/such/dir", "--", "true"]);
    expect(cwd.code).toBe(2);
    expect(cwd.stderr).toContain('stage "cwd"');
    const cmd = run(["session", "start", "box", "--name", "nocmd", "--require", "git", "--require", "no-such-tool-xyz", "--", "true"]);
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toContain('stage "command"');
    expect(cmd.stderr).toContain("no-such-tool-xyz");
    const shown = run(["session", "show", "box", "nocmd", "--json"]).json();
    expect(shown.status).toBe("failed");
    expect(shown.launchStage).toBe("command");
  });

  test("start a pipe session; send from stdin and from a file; logs by offset", async () => {
    const s = run(["session", "start", "box", "--name", "agent", "--json", "--", ...AGENT]);
    expect(s.code).toBe(0);
    expect(s.json().status).toBe("running");
    expect(run(["session", "send", "box", "agent", "--json"], "one\n").json().bytesWritten).toBe(4);
    writeFileSync(join(scratch, "payload"), "two\n");
    expect(run(["session", "send", "box", "agent", "--file", join(scratch, "payload")]).stdout).toBe("sent 4 bytes\n");
    expect(await waitFor(() => run(["session", "logs", "box", "agent"]).stdout === "got:one\ngot:two\n", 5000, 100)).toBe(true);
    const tail = run(["session", "logs", "box", "agent", "--offset", "8", "--json"]);
    expect(tail.json()).toEqual({ data: "got:two\n", offset: 8, nextOffset: 16 });
  });

  test("logs --json: a character written in two halves is never split across records; bytes that are not UTF-8 come as base64", async () => {
    const script = "printf '\\303'; sleep 1; printf '\\251\\n'; sleep 1; printf 'a\\377b\\n'";
    expect(run(["session", "start", "box", "--name", "halves", "--stdin", "closed", "--", "bash", "-c", script]).code).toBe(0);
    const want = Buffer.from([0xc3, 0xa9, 0x0a, 0x61, 0xff, 0x62, 0x0a]);
    const f = run(["session", "logs", "box", "halves", "-f", "--json"]);
    expect(f.code).toBe(0);
    const records = f.stdout.trim().split("\n").map((l) => JSON.parse(l) as { data: string; encoding?: string; offset: number; nextOffset: number });
    let at = 0;
    const bytes: Buffer[] = [];
    for (const r of records) {
      expect(r.offset).toBe(at);
      if (r.encoding === undefined) expect(r.data).not.toContain("\uFFFD");
      const b = r.encoding === "base64" ? Buffer.from(r.data, "base64") : Buffer.from(r.data, "utf8");
      expect(r.nextOffset).toBe(at + b.length);
      at = r.nextOffset;
      bytes.push(b);
    }
    expect(Buffer.concat(bytes)).toEqual(want);
    expect(records.some((r) => r.data.includes("é"))).toBe(true);
    const whole = run(["session", "logs", "box", "halves", "--json"]).json();
    expect(whole).toEqual({ data: want.toString("base64"), encoding: "base64", offset: 0, nextOffset: 7 });
  });

  test("hostile payloads and args arrive byte for byte", async () => {
    const hostile = ["it's", "a; touch /tmp/banger-pwned", "$(id)", "two\nlines", "`x`"];
    const s = run(["session", "start", "box", "--name", "hostile", "--stdin", "closed", "--", "printf", "%s|", ...hostile]);
    expect(s.code).toBe(0);
    expect(await waitFor(() => run(["session", "logs", "box", "hostile"]).stdout === hostile.join("|") + "|", 5000, 100)).toBe(true);
    expect(Bun.file("/tmp/banger-pwned").size).toBe(0);
    const weird = "{\"q\":\"it's $(x); `y`\"}\n";
    expect(run(["session", "send", "box", "agent"], weird).code).toBe(0);
    expect(await waitFor(() => run(["session", "logs", "box", "agent", "--offset", "16"]).stdout === "got:" + weird, 5000, 100)).toBe(true);
  });

  test("closed stdin: send fails with 'stdin pipe'; an empty payload is fine", () => {
    const r = run(["session", "send", "box", "hostile"], "x\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("stdin pipe");
    expect(run(["session", "send", "box", "agent", "--json"], "").json().bytesWritten).toBe(0);
  });

  test("send --eof: the command reads EOF after the payload (wc -c ends saying what it got); --eof on an ended session is refused", async () => {
    expect(run(["session", "start", "box", "--name", "counts", "--", "wc", "-c"]).code).toBe(0);
    expect(run(["session", "send", "box", "counts"], "hello ").code).toBe(0);
    const r = run(["session", "send", "box", "counts", "--eof", "--json"], "world\n");
    expect(r.stderr).toBe("");
    expect(r.json()).toMatchObject({ bytesWritten: 6, closed: true });
    let s = { status: "running", exitCode: null as number | null };
    for (let i = 0; i < 50 && s.status === "running"; i++) {
      await Bun.sleep(100);
      s = run(["session", "show", "box", "counts", "--json"]).json();
    }
    expect(s).toMatchObject({ status: "exited", exitCode: 0 });
    expect(run(["session", "logs", "box", "counts"]).stdout.trim()).toBe("12");
    const late = run(["session", "send", "box", "counts", "--eof"], "");
    expect([late.code, late.stderr]).toEqual([1, "banger: session counts is not running (status exited)\n"]);
  });

  test("send and logs after kill -9 of the daemon: nothing lost, nothing doubled", async () => {
    killAndWait(h.daemonPid());
    expect(run(["session", "send", "box", "agent"], "three\n").code).toBe(0);
    expect(await waitFor(() => run(["session", "logs", "box", "agent"]).stdout.endsWith("got:three\n"), 5000, 100)).toBe(true);
    const all = run(["session", "logs", "box", "agent"]).stdout;
    expect(all.split("\n").filter((l) => l === "got:three").length).toBe(1);
    expect(run(["session", "show", "box", "agent", "--json"]).json().status).toBe("running");
  });

  test("attach: live stdin and output, Ctrl-] detaches, the session keeps running; reattach from the offset", async () => {
    const before = run(["session", "logs", "box", "agent"]).stdout.length;
    const p = Bun.spawn([BANGER, "session", "attach", "box", "agent", "--offset", String(before), "--json"], { env: { ...h.env, ...env }, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const acc = { text: "" };
    p.stdin.write("four\n");
    p.stdin.flush();
    const ok = await readUntil(p, "got:four\n", acc);
    if (!ok) {
      p.kill();
      throw new Error(`attach never echoed: stdout=${JSON.stringify(acc.text)} stderr=${await new Response(p.stderr).text()}`);
    }
    expect(acc.text.startsWith("got:four\n")).toBe(true); // nothing before the offset was replayed

    // kill -9 the daemon mid-attach (after the send's answer is back: a kill during a send
    // loses its answer, and the CLI then says the input may not have arrived): the attach
    // reconnects and continues from its offset
    await Bun.sleep(500);
    killAndWait(h.daemonPid());
    await Bun.sleep(300);
    p.stdin.write("five\n");
    p.stdin.flush();
    expect(await readUntil(p, "got:five\n", acc)).toBe(true);
    p.stdin.write(new Uint8Array([0x1d]));
    p.stdin.flush();
    expect(await readUntil(p, "nextOffset", acc)).toBe(true);
    expect(await p.exited).toBe(0);
    const out = acc.text;
    expect(out.split("\n").filter((l) => l.startsWith("got:"))).toEqual(["got:four", "got:five"]);
    const next = JSON.parse(out.trim().split("\n").pop()!).nextOffset;
    expect(next).toBe(before + "got:four\ngot:five\n".length);
    expect(run(["session", "show", "box", "agent", "--json"]).json().status).toBe("running");
  }, 60_000);

  test("attach ends when the session does, says how it ended, and exits with its code; an attach to an ended session returns at once", async () => {
    const s = run(["session", "start", "box", "--name", "ends", "--", "sh", "-c", "sleep 1; echo bye; echo oops >&2; exit 7"]);
    expect(s.code).toBe(0);
    // stdin a pipe we never close: only the session's end may end the attach
    const attach = (json: boolean) =>
      Bun.spawn([BANGER, "session", "attach", "box", "ends", ...(json ? ["--json"] : [])], { env: { ...h.env, ...env }, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
    const t0 = Date.now();
    const p = attach(false);
    const code = await Promise.race([p.exited, Bun.sleep(8000).then(() => "still attached")]);
    const took = Date.now() - t0;
    p.kill();
    const [stdout, stderr] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
    console.log(`attach to a session that exits after 1 s returned after ${took} ms`);
    expect([code, stdout]).toEqual([7, "bye\n"]);
    expect(stderr).toContain("oops\n");
    expect(stderr).toContain("session ends exited (exit 7)");
    expect(stderr).not.toContain("reattach");

    const t1 = Date.now();
    const again = attach(true);
    const code2 = await Promise.race([again.exited, Bun.sleep(5000).then(() => "still attached")]);
    const took2 = Date.now() - t1;
    again.kill();
    console.log(`attach to an exited session returned after ${took2} ms`);
    expect(code2).toBe(7);
    const lines = (await new Response(again.stdout).text()).trim().split("\n");
    expect(lines[0]).toBe("bye");
    expect(JSON.parse(lines.at(-1)!)).toEqual({ nextOffset: 4, status: "exited", exitCode: 7 });
  }, 30_000);

  test("list says a session exited, with its code, without a show or logs first to make the daemon look", async () => {
    expect(run(["session", "start", "box", "--name", "quick", "--stdin", "closed", "--", "sh", "-c", "exit 3"]).code).toBe(0);
    await Bun.sleep(1000);
    const t0 = Date.now();
    const listed = run(["session", "list", "box", "--json"]).json<{ name: string; status: string; exitCode: number | null }[]>();
    console.log(`session list with ${listed.length} sessions, ${listed.filter((s) => s.status === "running").length} running: ${Date.now() - t0} ms`);
    const quick = listed.find((x) => x.name === "quick");
    expect([quick?.status, quick?.exitCode]).toEqual(["exited", 3]);
    expect(run(["session", "list", "box"]).stdout).toMatch(/\nquick +exited +closed +sh -c 'exit 3'\n/);
  });

  test("bad input is one line as for VMs: a missing VM (exit 1, the same words), a name no session can have (exit 2), an unreadable --file (exit 2)", () => {
    const missing = run(["session", "list", "nosuch"]);
    expect([missing.code, missing.stderr]).toEqual([1, "banger: vm not found: nosuch\n"]);
    const bad = run(["session", "show", "box", "bad name!"]);
    expect([bad.code, bad.stderr]).toEqual([2, `banger: bad session name "bad name!": use letters, digits, '.', '_' or '-' (at most 63, starting with a letter or digit)\n`]);
    const absent = run(["session", "show", "box", "no-such-session"]);
    expect([absent.code, absent.stderr]).toEqual([1, 'banger: no session "no-such-session" on vm box\n']);
    const file = run(["session", "send", "box", "agent", "--file", "/no/such/file"]);
    expect([file.code, file.stderr]).toEqual([2, "banger: cannot read /no/such/file: no such file\n"]);
  });

  test("list, stop (exit recorded), send to a stopped session says not running, rm", () => {
    const list = run(["session", "list", "box", "--json"]).json().map((s: { name: string }) => s.name);
    expect(list).toContain("agent");
    // the human list has vm list's shape: a header, columns as wide as their cells
    const human = run(["session", "list", "box"]).stdout.split("\n");
    expect(human[0]).toMatch(/^NAME +STATUS +STDIN +COMMAND$/);
    expect(human.find((l) => l.startsWith("agent "))).toMatch(/^agent +running +pipe +bash -c /);
    // one line a session, whatever its args hold (the hostile one's have a newline)
    expect(human.filter(Boolean).length).toBe(list.length + 1);
    const stopped = run(["session", "stop", "box", "agent", "--grace", "2", "--json"]).json();
    expect(stopped.status).toBe("stopped");
    expect(stopped.exitCode).not.toBeNull();
    const r = run(["session", "send", "box", "agent"], "late\n");
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("not running");
    expect(run(["session", "rm", "box", "agent"]).code).toBe(0);
    expect(run(["session", "show", "box", "agent"]).code).toBe(1);
  });
  test("session logs of a big log to a reader that takes nothing for 3 s: the daemon reads the guest's log no faster than the client takes it, and every byte arrives", async () => {
    const total = 80_000_000;
    expect(run(["session", "start", "box", "--name", "big", "--", "head", "-c", String(total), "/dev/zero"]).code).toBe(0);
    expect(await waitFor(() => run(["session", "show", "box", "big", "--json"]).json<{ status: string }>().status !== "running", 15_000, 100)).toBe(true);
    const daemonPid = h.daemonPid();
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(require("node:fs").readFileSync(`/proc/${daemonPid}/status`, "utf8"))?.[1] ?? 0) * 1024;
    const before = rss();
    const p = Bun.spawn(["bash", "-c", '"$0" "$@" > >(sleep 3; wc -c); wait', BANGER, "session", "logs", "box", "big"], { env: { ...h.env, ...env }, stdout: "pipe", stderr: "inherit" });
    await Bun.sleep(2000);
    const grew = rss() - before;
    console.log(`session logs behind a reader that reads nothing for 3 s: daemon +${(grew / 1e6).toFixed(0)} MB of a ${total / 1e6} MB log`);
    expect(grew).toBeLessThan(35e6);
    expect((await new Response(p.stdout).text()).trim()).toBe(String(total));
    expect(await p.exited).toBe(0);
    expect(run(["session", "rm", "box", "big"]).code).toBe(0);
  }, 60_000);

  test("a VM that stops ends its sessions with it: the list says so at once (failed, its vm stopped), not only once someone asks the guest", () => {
    const marker = `977.${process.pid}`;
    expect(run(["session", "start", "box", "--name", "goes", "--", "sleep", marker]).code).toBe(0);
    expect(run(["session", "list", "box", "--json"]).json<{ name: string; status: string }[]>().find((x) => x.name === "goes")?.status).toBe("running");
    expect(run(["vm", "stop", "box"]).code).toBe(0);
    const listed = run(["session", "list", "box", "--json"]).json<{ name: string; status: string; launchMessage: string }[]>().find((x) => x.name === "goes");
    expect([listed?.status, listed?.launchMessage]).toEqual(["failed", "its vm stopped"]);
    expect(run(["session", "show", "box", "goes"]).stdout).toContain("\nwhy:      its vm stopped");
    expect(readFileSync(join(h.home, "daemon.log"), "utf8")).toContain("vm box stopped: session goes ended with it");
    // this test's guest is the host: its process outlives the stop here (a real guest's does not)
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8") === `sleep\u0000${marker}\u0000`) process.kill(Number(pid), "SIGKILL");
      } catch {}
    }
    expect(run(["vm", "start", "box"]).code).toBe(0);
  });

  test("a command or a log follow cut by a stop on purpose says so (restart, rollback, stop), not that a connection closed", async () => {
    const marker = `978.${process.pid}`;
    expect(run(["session", "start", "box", "--name", "cut", "--", "sleep", marker]).code).toBe(0);
    const spawn = (args: string[]) => Bun.spawn([BANGER, ...args], { env: { ...h.env, ...env }, stdout: "pipe", stderr: "pipe" });
    const exec = spawn(["vm", "exec", "box", "--", "sleep", marker]);
    const follow = spawn(["session", "logs", "box", "cut", "-f"]);
    await Bun.sleep(1500);
    // stopped, not restarted: a restart here can be back before the follow looks (this test's guest is the host, its session lives on)
    expect(run(["vm", "stop", "box"]).code).toBe(0);
    expect([await exec.exited, await new Response(exec.stderr).text()]).toEqual([1, "banger: vm box: the command did not finish: it was stopped\n"]);
    // this test's guest is the host: its session's process outlives the stop (a real guest's does not), and a follow
    // that reads on through the host's sshd would wait for it: it goes now, as it would have with the VM
    for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
      try {
        if (readFileSync(`/proc/${pid}/cmdline`, "utf8") === `sleep\u0000${marker}\u0000`) process.kill(Number(pid), "SIGKILL");
      } catch {}
    }
    const followed = [await follow.exited, await new Response(follow.stderr).text()];
    expect(run(["session", "show", "box", "cut"]).stdout).toContain("\nwhy:      its vm stopped");
    expect(run(["vm", "start", "box"]).code).toBe(0);
    // the follow ends with the session (failed: its vm stopped), or, when it looked first, saying why
    expect([[0, ""], [1, "banger: vm box: following session cut's log ended: it was stopped\n"]]).toContainEqual(followed);
  }, 30_000);
});
