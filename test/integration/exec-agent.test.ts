import { afterAll, beforeAll, expect } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IS_ROOT, needs } from "../helpers/skip.ts";
import { freePort, waitBanner } from "../helpers/sshd.ts";
import EXEC_AGENT_PL from "../../plugins/image/exec-agent.pl" with { type: "text" };
import { PerlExecAgent as Agent } from "../helpers/perl-exec-agent.ts";
import { shellJoin } from "../../src/shared/quote.ts";

// The exec agent as the guest runs it (test/helpers/perl-exec-agent.ts: the
// text build.ts installs, in a real perl, under a bash that ignores some
// signals and leaves an fd open, as init.sh's `&` and PID 1 might). Root:
// commands run as uid 0's passwd entry says, so in HOME=/root.
const it = needs(IS_ROOT && !!Bun.which("perl"), "needs root (commands run in uid 0's HOME) and perl");

/** uid 0's passwd entry: what the agent takes USER, HOME and SHELL from. */
function rootEntry(): { name: string; home: string; shell: string } {
  const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.split(":")[2] === "0")!;
  const f = line.split(":");
  return { name: f[0]!, home: f[5]!, shell: f[6] || "/bin/sh" };
}

it.describe("the exec agent (plugins/image/exec-agent.pl)", () => {
  let agent: Agent;
  let seq = 0;
  const id = () => `t${++seq}`;
  const marker = join(tmpdir(), `banger-exec-agent-${process.pid}`);

  beforeAll(() => {
    agent = new Agent({ LANG: "C.UTF-8", FOO: "must-not-pass", PATH: "/usr/bin:/bin" });
  });
  afterAll(async () => {
    agent.proc.stdin.end();
    await Promise.race([agent.proc.exited, Bun.sleep(5000)]);
    agent.proc.kill("SIGKILL");
    rmSync(marker, { force: true });
  });

  it.test("ping gets a pong with the same ID", async () => {
    await agent.ping("pp1");
  });

  it.test("hostile command lines run exactly as given: the same output as bash -c of the same bytes", async () => {
    const cmd = `printf '%s|' 'it'"'"'s; $(echo sub) \`echo tick\`' "a;b" $(echo sub) \`echo tick\`; echo\necho 'line two' ; echo "\\$HOME" '$HOME'`;
    const want = Bun.spawnSync(["bash", "-c", cmd], { env: { HOME: rootEntry().home } });
    const r = await agent.run(id(), cmd);
    expect(r.out.toString()).toBe(want.stdout.toString());
    expect(r.out.toString()).toContain("it's; $(echo sub) `echo tick`|a;b|sub|tick|");
    expect(r.code).toBe(0);
  });

  it.test("stdout and stderr come back apart and binary-clean: 1 MiB of random bytes through stdin and back, NULs on stderr, chunks of at most 64 KiB", async () => {
    const data = randomBytes(1 << 20);
    const r = await agent.run(id(), "cat; printf 'e\\0r\\0r' >&2", data);
    expect(r.code).toBe(0);
    expect(r.out.equals(data)).toBe(true);
    expect(r.err.equals(Buffer.from("e\0r\0r"))).toBe(true);
    expect(r.chunks.filter((f) => f.t === "o" || f.t === "e").every((f) => f.data.length >= 1 && f.data.length <= 65536)).toBe(true);
    // x after every o/e
    expect(r.chunks.at(-1)!.t).toBe("x");
  });

  it.test("exit codes come back: 0, 3, 255, and 128+9 for a command killed by a k frame", async () => {
    expect((await agent.run(id(), "true")).code).toBe(0);
    expect((await agent.run(id(), "exit 3")).code).toBe(3);
    expect((await agent.run(id(), "exit 255")).code).toBe(255);
    const k = id();
    agent.send("s", k, "echo started; exec sleep 30");
    await agent.until((fs) => fs.some((f) => f.id === k && f.t === "o"));
    agent.send("k", k, "9");
    const r = await agent.result(k);
    expect(r.code).toBe(137);
    expect(r.out.toString()).toBe("started\n");
  });

  it.test("k signals the whole process group: a pipeline's every process", async () => {
    const k = id();
    agent.send("s", k, "echo $$; sleep 30 | sleep 30; echo not-reached");
    await agent.until((fs) => fs.some((f) => f.id === k && f.t === "o"));
    await Bun.sleep(200);
    agent.send("k", k, "15");
    const r = await agent.result(k);
    expect(r.code).toBe(128 + 15);
    const [sid, ...rest] = r.out.toString().split("\n");
    expect(rest.join("")).toBe("");
    // neither sleep lives on in the command's session
    const alive = () => Bun.spawnSync(["ps", "-o", "pid=", "-s", sid!]).stdout.toString().trim();
    for (let i = 0; i < 20 && alive() !== ""; i++) await Bun.sleep(100);
    expect(alive()).toBe("");
  });

  it.test("stdin data and EOF: wc -c counts exactly what was sent", async () => {
    const r = await agent.run(id(), "wc -c", Buffer.alloc(12345, 0x61));
    expect(r.out.toString().trim()).toBe("12345");
    // EOF with no data at all
    expect((await agent.run(id(), "wc -c", new Uint8Array())).out.toString().trim()).toBe("0");
  });

  it.test("two commands at once: their output interleaves, each ID gets its own", async () => {
    const [a, b] = [id(), id()];
    const loop = (tag: string) => `for i in 1 2 3 4; do echo ${tag}$i; echo ${tag}err$i >&2; sleep 0.2; done`;
    agent.send("s", a, loop("a"));
    agent.send("s", b, loop("b"));
    const [ra, rb] = await Promise.all([agent.result(a), agent.result(b)]);
    expect(ra.out.toString()).toBe("a1\na2\na3\na4\n");
    expect(rb.out.toString()).toBe("b1\nb2\nb3\nb4\n");
    expect(ra.err.toString()).toBe("aerr1\naerr2\naerr3\naerr4\n");
    // b's first output came before a ended: they ran side by side
    const order = agent.frames.filter((f) => f.id === a || f.id === b).map((f) => `${f.t}${f.id}`);
    expect(order.indexOf(`o${b}`)).toBeLessThan(order.indexOf(`x${a}`));
  });

  it.test("the command's world is dropbear's for root: env exactly, cwd HOME, $0 the shell's basename", async () => {
    const root = rootEntry();
    // a second command keeps bash from exec'ing cat: /proc/$$/environ is then what the shell was given
    const r = await agent.run(id(), 'cat /proc/$$/environ; printf "\\n%s\\n%s\\n" "$0" "$PWD"; true');
    const [env, zero, cwd] = [r.out.toString().split("\n")[0]!, r.out.toString().split("\n")[1], r.out.toString().split("\n")[2]];
    const vars = Object.fromEntries(
      env
        .split("\0")
        .filter(Boolean)
        .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
    );
    expect(vars).toEqual({
      USER: root.name,
      LOGNAME: root.name,
      HOME: root.home,
      SHELL: root.shell,
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      LANG: "C.UTF-8",
    });
    expect(zero).toBe(root.shell.slice(root.shell.lastIndexOf("/") + 1));
    expect(cwd).toBe(root.home);
  });

  it.test("the command leads its own session, with no signal ignored or blocked and only fds 0-2", async () => {
    // grep's own status: bash ignores SIGQUIT in itself (not in what it runs), over dropbear too
    const r = await agent.run(id(), 'read -r _ _ _ _ _ sid _ </proc/$$/stat; echo "$$ $sid"; grep -E "^Sig(Ign|Blk)" /proc/self/status; ls /proc/$$/fd; true');
    const lines = r.out.toString().trim().split("\n");
    const [pid, sid] = lines[0]!.split(" ");
    expect(sid).toBe(pid);
    expect(lines.slice(1, 3).sort()).toEqual(["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]);
    expect(lines.slice(3).sort()).toEqual(["0", "1", "2"]);
    // `kill 0` in a command reaches only its own session: the agent lives on
    expect((await agent.run(id(), "kill 0")).code).toBe(128 + 15);
    await agent.ping("afterkill0");
  });

  it.test("a long command line over a frames, started by s, runs whole", async () => {
    const words = Array.from({ length: 3000 }, (_, i) => `w${i}`).join(" ");
    const cmd = `for w in ${words}; do n=$((n+1)); done; echo "$n $w"`;
    const k = id();
    const bytes = Buffer.from(cmd);
    expect(bytes.length).toBeGreaterThan(3 * 4000);
    let i = 0;
    for (; bytes.length - i > 4000; i += 4000) agent.send("a", k, bytes.subarray(i, i + 4000));
    agent.send("s", k, bytes.subarray(i));
    const r = await agent.result(k);
    expect(r.out.toString()).toBe("3000 w2999\n");
  });

  it.test("a frame with a bad trailer runs nothing, nor anything before the next sync line; then frames work again", async () => {
    rmSync(marker, { force: true });
    const touch = `touch ${marker}`;
    // the trailer names another ID
    agent.raw(`s bad1 ${touch.length}\n${touch}.bad2\n`);
    // a well-formed frame before the sync line is part of what is dropped
    agent.send("s", "bad3", touch);
    agent.send("p", "bad4");
    agent.raw("sync\n");
    await agent.ping("good1");
    // a malformed header, garbage, then the host's recovery: newlines, sync, ping
    agent.raw(`S bad5 99999\n${touch}\n.bad5\nxx`);
    agent.raw(`${"\n".repeat(4200)}sync\n`);
    await agent.ping("good2");
    // a sync line where a header is due: nothing
    agent.raw("sync\n");
    expect((await agent.run(id(), "echo fine")).out.toString()).toBe("fine\n");
    expect(existsSync(marker)).toBe(false);
    expect(agent.frames.filter((f) => f.id.startsWith("bad"))).toEqual([]);
  });

  it.test("the same ID while it runs: r, the running one goes on; stdin and k for unknown IDs are ignored", async () => {
    const k = id();
    agent.send("s", k, "sleep 0.5; echo first");
    agent.send("s", k, "echo second");
    agent.send("i", "nosuchid", "data");
    agent.send("k", "nosuchid", "9");
    await agent.until((fs) => fs.some((f) => f.id === k && f.t === "r"));
    const r = await agent.result(k);
    expect(r.reason).toContain("running");
    await agent.until((fs) => fs.some((f) => f.id === k && f.t === "x"));
    const out = Buffer.concat(agent.frames.filter((f) => f.id === k && f.t === "o").map((f) => f.data)).toString();
    expect(out).toBe("first\n");
  });

  it.test("dropbear's rule for background jobs: the exec ends when the command exits; a job that writes on reaches nobody and wedges nothing", async () => {
    const k = id();
    const t0 = Date.now();
    const r = await agent.run(k, "(sleep 1; echo late) & echo early");
    expect(Date.now() - t0).toBeLessThan(900);
    expect(r.out.toString()).toBe("early\n");
    expect(r.code).toBe(0);
    // a job that writes without end, stdin and both outputs held
    const y = id();
    const ry = await agent.run(y, "yes & yes >&2 & sleep 3 <&0 & echo bg");
    expect(ry.code).toBe(0);
    // meanwhile the agent serves other execs and pings
    await agent.ping("bgping");
    expect((await agent.run(id(), "echo other")).out.toString()).toBe("other\n");
    await Bun.sleep(1200);
    // nothing for the ended IDs after their x
    for (const e of [k, y]) {
      const mine = agent.frames.filter((f) => f.id === e);
      expect(mine.at(-1)!.t).toBe("x");
      expect(mine.filter((f) => f.t === "x")).toHaveLength(1);
    }
    expect(agent.frames.some((f) => f.id === k && f.data.toString().includes("late"))).toBe(false);
  });

  it.test("one exec of `true` through the agent takes little time (the figure is printed)", async () => {
    const n = 30;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) expect((await agent.run(id(), "true")).code).toBe(0);
    const ms = (performance.now() - t0) / n;
    console.log(`exec-agent: one exec of true: ${ms.toFixed(2)} ms (mean of ${n})`);
    expect(ms).toBeLessThan(500);
  });
});

/** `cat /proc/$$/environ` output as a map. */
function environ(text: string): Record<string, string> {
  return Object.fromEntries(
    text
      .split("\0")
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
}
const ENV_AND_ZERO = 'cat /proc/$$/environ; printf "\\n%s\\n%s\\n" "$0" "$PWD"; true';

it.describe("the exec agent when its host goes quiet (a daemon killed -9)", () => {
  it.test("a host that beat and then says nothing for BANGER_EXEC_AGENT_HOST_GONE_S: its commands are killed (137), the agent serves the next host; one that never beat (an older daemon) is never so judged", async () => {
    const a = new Agent({ LANG: "C.UTF-8", BANGER_EXEC_AGENT_HOST_GONE_S: "2" });
    try {
      // an older host: no beat, 4 s of silence, the command runs on to its own end
      a.send("s", "old1", "sleep 4.2; echo done");
      const t0 = Date.now();
      const old = await a.result("old1");
      expect([old.code, old.out.toString()]).toEqual([0, "done\n"]);
      expect(Date.now() - t0).toBeGreaterThan(4000);
      // a beating host: while it beats, the command runs; once it stops, within ~2 s the command is killed
      a.send("s", "hg1", "sleep 29.6");
      let quietFrom = 0;
      for (let i = 0; i < 4; i++) {
        a.send("p", `b${i}`, "b");
        quietFrom = Date.now();
        await Bun.sleep(1000);
      }
      expect(a.frames.some((f) => f.id === "hg1" && (f.t === "x" || f.t === "r"))).toBe(false);
      const r = await a.result("hg1");
      const after = Date.now() - quietFrom;
      console.log(`a command of a host gone quiet (after 4 beats) killed ${after} ms after its last beat (limit 2 s)`);
      expect(r.code).toBe(128 + 9);
      // the agent counts whole seconds (perl's time): more than 2 of them
      expect(after).toBeGreaterThan(1900);
      expect(after).toBeLessThan(6000);
      // the next host attaches and is served
      a.send("p", "att", "v");
      await a.until((fs) => fs.some((f) => f.t === "p" && f.id === "att"));
      expect((await a.run("next", "echo ok")).out.toString()).toBe("ok\n");
    } finally {
      a.proc.stdin.end();
      a.proc.kill("SIGKILL");
      await a.proc.exited;
    }
  }, 30_000);
});

it.describe("the exec agent at the port's end", () => {
  it.test("EOF on the port: the commands running finish and report, then the agent exits 0", async () => {
    const a = new Agent({ LANG: "C.UTF-8" });
    try {
      a.send("s", "last", "sleep 0.5; echo done");
      await a.ping("before");
      a.proc.stdin.end();
      const r = await a.result("last");
      expect([r.out.toString(), r.code]).toEqual(["done\n", 0]);
      expect(await a.proc.exited).toBe(0);
    } finally {
      a.proc.kill("SIGKILL");
    }
  });
});

it.describe("the exec agent's own ends of a command's pipes", () => {
  it.test("it keeps only the write end of a command's stdin, the first command's too: a command that closes its stdin makes the agent's writes fail (EPIPE) rather than fill a pipe nobody reads", async () => {
    const a = new Agent({ LANG: "C.UTF-8" });
    try {
      // the first command's stdin pipe gets the lowest free fd, the one a handle perl keeps open used to hold
      a.send("s", "first", "readlink /proc/$$/fd/0; sleep 1");
      await a.until((fs) => fs.some((f) => f.id === "first" && f.t === "o"));
      const stdinPipe = a.frames.find((f) => f.id === "first" && f.t === "o")!.data.toString().trim();
      expect(stdinPipe).toMatch(/^pipe:\[\d+\]$/);
      const fds = readdirSync(`/proc/${a.proc.pid}/fd`).filter((fd) => {
        try {
          return readlinkSync(`/proc/${a.proc.pid}/fd/${fd}`) === stdinPipe;
        } catch {
          return false;
        }
      });
      expect(fds).toHaveLength(1);
      a.stdin("first", new Uint8Array());
      expect((await a.result("first")).code).toBe(0);
    } finally {
      a.proc.kill("SIGKILL");
    }
  });
});

it.describe("the exec agent with another passwd entry for uid 0 (a private /etc/passwd)", () => {
  const dir = join(tmpdir(), `banger-exec-agent-pw-${process.pid}`);
  const agents: Agent[] = [];
  const start = (line: string) => {
    mkdirSync(dir, { recursive: true });
    const f = join(dir, `passwd-${agents.length}`);
    writeFileSync(f, `${line}\n`);
    const a = new Agent({ LANG: "C.UTF-8" }, f);
    agents.push(a);
    return a;
  };
  afterAll(async () => {
    for (const a of agents) {
      a.proc.stdin.end();
      a.proc.kill("SIGKILL");
      await a.proc.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it.test("a shell that cannot be executed: r with the reason, no x, and the agent serves on", async () => {
    const a = start("root:x:0:0:root:/:/nonexistent/shell");
    const r = await a.run("e1", "true");
    expect(r.code).toBeNull();
    expect(r.reason).toBe("exec /nonexistent/shell: No such file or directory");
    await a.ping("e2");
    expect(a.frames.filter((f) => f.id === "e1").map((f) => f.t)).toEqual(["r"]);
  });

  it.test("a command line of single-quoted words (vm exec's own: shellJoin) runs without the shell, its words as argv byte for byte; anything else still needs the shell", async () => {
    // root's shell, a bash, cannot be executed: what runs anyway ran without it
    const a = start("root:x:0:0:root:/:/nonexistent/bash");
    const hostile = ["it's; $(touch /tmp/pwned) `x`", "two  spaces", "new\nline", "", "\\'\"", "*"];
    // printf by its path: the name alone is bash's builtin, which goes to the shell
    const line = shellJoin([Bun.which("printf")!, "%s|", ...hostile]);
    const r = await a.run("d1", line);
    expect([r.code, r.out.toString()]).toEqual([0, hostile.map((w) => `${w}|`).join("")]);
    // a path, and a name found on PATH
    expect((await a.run("d2", shellJoin(["/bin/sh", "-c", "exit 7"]))).code).toBe(7);
    expect((await a.run("d3", shellJoin(["true"]))).code).toBe(0);
    expect((await a.run("d4", shellJoin(["false"]))).code).toBe(1);
    // a builtin (cd, echo: bash's own), a name on no PATH dir, shell syntax, an unquoted word, an assignment: the shell's, which cannot start here
    for (const [i, cmd] of [shellJoin(["cd", "/"]), shellJoin(["echo", "x"]), shellJoin(["printf", "x"]), shellJoin(["no-such-command-here"]), `${shellJoin(["true"])}; true`, "true", `'A=1'`].entries()) {
      const refused = await a.run(`n${i}`, cmd);
      expect([cmd, refused.code, refused.reason]).toEqual([cmd, null, "exec /nonexistent/bash: No such file or directory"]);
    }
    await a.ping("d5");
    // a login shell that is not bash (an OCI image's wrapper, which sets the image's env and workdir) runs every command
    const w = start("root:x:0:0:root:/:/nonexistent/shell");
    expect((await w.run("w1", shellJoin(["true"]))).reason).toBe("exec /nonexistent/shell: No such file or directory");
  });

  it.test("dropbear's rules for an empty shell field (/bin/sh) and a HOME it cannot enter (said on stderr, cwd /)", async () => {
    const a = start("root:x:0:0:root:/nonexistent-home:");
    const r = await a.run("h1", ENV_AND_ZERO);
    const [env, zero, cwd] = r.out.toString().split("\n");
    expect(environ(env!)).toMatchObject({ HOME: "/nonexistent-home", SHELL: "/bin/sh" });
    expect([zero, cwd]).toEqual(["sh", "/"]);
    // dropbear's own words (`strings /usr/sbin/dropbear`: "Failed chdir '%s': %s")
    expect(r.err.toString()).toBe("Failed chdir '/nonexistent-home': No such file or directory\n");
  });
});

// The real dropbear as the guest runs it, next to the agent, both started with
// init.sh's environment: what a command sees over either must be the same, bar
// what describes the network peer and key (SSH_CONNECTION, SSH_CLIENT,
// SSH_PUBKEYINFO), which the agent has no counterpart for.
const DROPBEAR_TOOLS = ["dropbear", "dropbearkey", "ssh", "ssh-keygen", "unshare", "mount"];
const missing = DROPBEAR_TOOLS.find((t) => !Bun.which(t, { PATH: `${process.env.PATH}:/usr/sbin:/sbin` }));
const withDropbear = needs(IS_ROOT && !missing && !!Bun.which("perl"), `needs root, perl and ${missing ?? "the ssh tools"}`);

withDropbear.describe("the exec agent next to the real dropbear", () => {
  const dir = join(tmpdir(), `banger-exec-agent-db-${process.pid}`);
  const INIT_ENV = { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", HOME: "/root", TERM: "linux", LANG: "C.UTF-8" };
  let server: Bun.Subprocess | null = null;
  let port = 0;
  let agent: Agent;
  const ssh = async (cmd: string) => {
    const p = Bun.spawn(["ssh", "-F", "/dev/null", "-i", join(dir, "client"), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-p", String(port), "root@127.0.0.1", cmd], { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
    return { out, err, code };
  };

  beforeAll(async () => {
    const home = join(dir, "root-home");
    mkdirSync(join(home, ".ssh"), { recursive: true, mode: 0o700 });
    Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test-key", "-f", join(dir, "client")]);
    Bun.spawnSync(["dropbearkey", "-t", "ed25519", "-f", join(dir, "host")], { env: { PATH: `${process.env.PATH}:/usr/sbin` } });
    writeFileSync(join(home, ".ssh", "authorized_keys"), readFileSync(join(dir, "client.pub")), { mode: 0o600 });
    for (let attempt = 0; attempt < 5 && !server; attempt++) {
      port = await freePort();
      // /root is a temp dir for dropbear alone (root's keys); unshare execs sh, which execs dropbear
      const p = Bun.spawn(["unshare", "-m", "--propagation", "private", "sh", "-c", 'mount --bind "$1" /root && exec dropbear -F -E -s -r "$2" -p "127.0.0.1:$3" -P "$4"', "sh", home, join(dir, "host"), String(port), join(dir, "dropbear.pid")], {
        stdout: "ignore",
        stderr: "ignore",
        env: { ...INIT_ENV, PATH: `${INIT_ENV.PATH}:${process.env.PATH}` },
      });
      if (await waitBanner(port, Date.now() + 10_000)) server = p;
      else {
        p.kill("SIGKILL");
        await p.exited;
      }
    }
    if (!server) throw new Error("dropbear did not start");
    agent = new Agent(INIT_ENV);
  });
  afterAll(async () => {
    if (server) {
      server.kill("SIGTERM");
      await server.exited;
    }
    agent.proc.stdin.end();
    agent.proc.kill("SIGKILL");
    await agent.proc.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  withDropbear.test("the same environment (names and values), $0 and cwd", async () => {
    const [viaSsh, viaAgent] = [await ssh(ENV_AND_ZERO), await agent.run("db1", ENV_AND_ZERO)];
    expect(viaSsh.code).toBe(0);
    const [sEnv, ...sRest] = viaSsh.out.split("\n");
    const [aEnv, ...aRest] = viaAgent.out.toString().split("\n");
    const fromSsh = environ(sEnv!);
    // what only a network login has
    expect(Object.keys(fromSsh).filter((k) => k.startsWith("SSH_")).sort()).toEqual(["SSH_CLIENT", "SSH_CONNECTION", "SSH_PUBKEYINFO"]);
    for (const k of ["SSH_CLIENT", "SSH_CONNECTION", "SSH_PUBKEYINFO"]) delete fromSsh[k];
    expect(environ(aEnv!)).toEqual(fromSsh);
    expect(aRest).toEqual(sRest);
  }, 30_000);

  withDropbear.test("a command of quoted words, which the agent runs without bash: the same environment, argv, $0 and cwd as over dropbear (bash's one-command exec)", async () => {
    const cmd = shellJoin(["env", "-0"]);
    const [viaSsh, viaAgent] = [await ssh(cmd), await agent.run("dq1", cmd)];
    expect(viaSsh.code).toBe(0);
    const fromSsh = environ(viaSsh.out);
    for (const k of ["SSH_CLIENT", "SSH_CONNECTION", "SSH_PUBKEYINFO"]) delete fromSsh[k];
    expect(environ(viaAgent.out.toString())).toEqual(fromSsh);
    expect(fromSsh).toMatchObject({ SHLVL: "0", _: "/usr/bin/env", PWD: "/root" });
    const args = shellJoin(["sh", "-c", 'printf "%s|" "$0" "$@" "$PWD"', "zero", "it's; $(x)", "a\nb"]);
    const [s2, a2] = [await ssh(args), await agent.run("dq2", args)];
    expect(a2.out.toString()).toBe(s2.out);
    expect(s2.out).toBe("zero|it's; $(x)|a\nb|/root|");
  }, 30_000);

  withDropbear.test("a background job: both end the exec when the command exits, without the job's later output", async () => {
    const cmd = "(sleep 2; echo late) & echo early";
    let t0 = Date.now();
    const viaSsh = await ssh(cmd);
    const sshMs = Date.now() - t0;
    t0 = Date.now();
    const viaAgent = await agent.run("db2", cmd);
    const agentMs = Date.now() - t0;
    expect([viaSsh.out, viaSsh.code]).toEqual(["early\n", 0]);
    expect([viaAgent.out.toString(), viaAgent.code]).toEqual(["early\n", 0]);
    expect(sshMs).toBeLessThan(1800);
    expect(agentMs).toBeLessThan(1800);
  }, 30_000);
});

// init.sh's own lines that find the ports and start the agents, in a private
// mount namespace whose /sys/class and /dev are tmpfs: a virtio-ports entry
// per port as the kernel names them, the exec port a char device (a null
// device: the agent's reads end at once). The agent's path is rewritten as
// oci.ts rewrites it; `perl` is a stand-in that says how it was started.
const INIT_SH_PATH = join(import.meta.dir, "../../plugins/image/init.sh");
withNs().describe("init.sh starts the exec agent on the banger.exec port", () => {
  const dir = join(tmpdir(), `banger-exec-agent-init-${process.pid}`);
  const snippet = () => {
    const text = readFileSync(INIT_SH_PATH, "utf8");
    const start = text.indexOf("AGENT_PORT='' EXEC_PORT=''");
    const end = text.indexOf('echo "BANGER-EXEC-AGENT"\nfi\n', start);
    if (start < 0 || end < 0) throw new Error("init.sh's port lines moved");
    return text.slice(start, end + 'echo "BANGER-EXEC-AGENT"\nfi\n'.length).replace(/^EXEC_AGENT=.*$/m, `EXEC_AGENT=${dir}/exec-agent.pl`);
  };
  const boot = (ports: string[], path: string) => {
    const setup = [
      "mount -t tmpfs t /sys/class && mount -t tmpfs t /dev || exit 1",
      "mknod -m 666 /dev/null c 1 3",
      'for p in $PORTS; do n=${p%%=*}; mkdir -p /sys/class/virtio-ports/$n; echo "${p#*=}" >/sys/class/virtio-ports/$n/name; mknod /dev/$n c 1 3; done',
      'PATH="$STUB_PATH"',
      // the bash agent on banger.agent, found by the same loop: a stand-in here (guest-agent.test.ts runs the real one)
      "_agent() { :; }",
      snippet(),
      "wait",
      'echo "BANGER-READY"',
    ].join("\n");
    const p = Bun.spawnSync(["unshare", "-m", "--propagation", "private", "/bin/bash", "--norc", "-c", setup], { env: { PATH: process.env.PATH ?? "", PORTS: ports.join(" "), STUB_PATH: path } });
    const started = existsSync(join(dir, "started")) ? readFileSync(join(dir, "started"), "utf8") : "";
    rmSync(join(dir, "started"), { force: true });
    return { console: p.stdout.toString(), started };
  };
  beforeAll(() => {
    mkdirSync(join(dir, "bin"), { recursive: true });
    writeFileSync(join(dir, "exec-agent.pl"), EXEC_AGENT_PL);
    writeFileSync(join(dir, "bin", "perl"), `#!/bin/sh\nprintf '%s|%s|%s|%s\\n' "$*" "$(readlink /proc/$$/fd/0)" "$(readlink /proc/$$/fd/1)" "$(readlink /proc/$$/fd/2)" >${dir}/started\n`, { mode: 0o755 });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.test("with the port and a perl: perl FILE, the port both ways, BANGER-EXEC-AGENT before BANGER-READY", () => {
    const r = boot(["vport0p1=banger.agent", "vport0p2=banger.exec"], `${dir}/bin:/usr/bin:/bin`);
    expect(r.started).toBe(`${dir}/exec-agent.pl|/dev/vport0p2|/dev/vport0p2|/dev/null\n`);
    expect(r.console).toBe("BANGER-AGENT\nBANGER-EXEC-AGENT\nBANGER-READY\n");
  });

  it.test("no perl, or no banger.exec port: no exec agent and no marker (the bash agent as before)", () => {
    expect(boot(["vport0p1=banger.agent", "vport0p2=banger.exec"], "/nonexistent")).toEqual({ console: "BANGER-AGENT\nBANGER-READY\n", started: "" });
    expect(boot(["vport0p1=banger.agent", "vport0p2=banger.other"], `${dir}/bin:/usr/bin:/bin`)).toEqual({ console: "BANGER-AGENT\nBANGER-READY\n", started: "" });
  });
});

function withNs() {
  return needs(IS_ROOT && !!Bun.which("unshare"), "needs root and unshare: a private /sys/class and /dev");
}
