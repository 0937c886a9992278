// Hostile input, table-driven, through dist/banger and straight at its unix
// socket: bad names, paths, quoting, NUL, 0 B and 50 MB payloads, malformed /
// oversized / deeply nested JSON, unknown fields, wrong types, a client that
// sends one byte a second. Each case: a clear 4xx / exit 2, or the exact bytes
// arriving in the guest (a real sshd on 127.0.0.1); the daemon stays up (same
// pid) and nothing is half-created.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { connect } from "node:net";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { alive, BANGER, waitFor } from "../helpers/cli.ts";
import { fakeGuestVM } from "../helpers/fake-guest.ts";
import { git } from "../helpers/git.ts";
import { guestLogin } from "../helpers/sshd.ts";

const g = fakeGuestVM("banger-hostile-");
const { h, scratch, guestRoot, run } = g;
const sock = () => join(h.home, "bangerd.sock");
const results = { cli: 0, api: 0, bytes: 0 };
let daemonPid = 0;

const HOSTILE_NAMES: [string, string][] = [
  ["dot-dot", "../x"],
  ["slash", "a/b"],
  ["dash", "-rf"],
  ["unicode", "ünïcødé"],
  ["300 chars", "a".repeat(300)],
  ["empty", ""],
  ["upper", "Box"],
  ["space", "a b"],
  ["semicolon", "a;rm -rf ~"],
  ["subshell", "$(touch /tmp/banger-pwned)"],
  ["backticks", "`id`"],
  ["newline", "a\nb"],
  ["quote", "it's"],
  ["dot", "."],
];
const HOSTILE_ARGS = ["it's", "a; touch /tmp/banger-pwned", "$(id)", "`id`", "two\nlines", '"dq"', "\\", "*", "-rf", "", " lead", "ünï", "$HOME", "a'b\"c"];

/** Everything after a hostile case: the daemon is the same process, only the known VM and sessions exist. */
function stillSane(sessions: string[] = []) {
  expect(h.daemonPid()).toBe(daemonPid);
  expect(alive(daemonPid)).toBe(true);
  const vms = run(["vm", "list", "--json"]).json<{ name: string }[]>();
  expect(vms.map((v) => v.name)).toEqual(["box"]);
  const ss = run(["session", "list", "box", "--json"]).json<{ name: string }[]>().map((s) => s.name);
  for (const s of ss) expect(sessions).toContain(s);
}

async function api(method: string, path: string, body?: string | Uint8Array, headers: Record<string, string> = {}) {
  const res = await fetch(`http://banger${path}`, { method, body, headers, unix: sock() } as RequestInit);
  const text = await res.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, text, json };
}

beforeAll(async () => {
  await g.start();
  daemonPid = h.daemonPid();
  const repo = join(scratch, "repo");
  mkdirSync(repo);
  git(repo, "init", "-q", "-b", "main");
  writeFileSync(join(repo, "f"), "x\n");
  git(repo, "add", ".");
  git(repo, "commit", "-q", "-m", "init");
}, 30_000);

afterAll(async () => {
  await g.cleanup();
  console.log(`hostile input: ${results.cli} CLI cases, ${results.api} socket cases, ${results.bytes} byte-exact cases`);
});

describe("CLI: hostile names are exit 2 with one line, nothing created", () => {
  // session names may have capitals (VM names may not: they become DNS names)
  const cmds: [string, (n: string) => string[], [string, string][]][] = [
    ["vm create", (n) => ["vm", "create", n, "--image", "tiny", "--driver", "fake"], HOSTILE_NAMES],
    ["session start", (n) => ["session", "start", "box", "--name", n, "--", "true"], HOSTILE_NAMES.filter(([l]) => l !== "upper")],
  ];
  for (const [what, argv, names] of cmds) {
    test.each(names)(`${what} %s`, (_label, name) => {
      const r = run(argv(name));
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n").length).toBe(1);
      expect(r.stderr).toStartWith("banger: ");
      results.cli++;
      stillSane();
    });
  }
  test.each(HOSTILE_NAMES.filter(([, n]) => n !== ""))("vm show %s: exit 2 (bad name) or 1 (not found), one line", (_l, name) => {
    const r = run(["vm", "show", name]);
    expect([1, 2]).toContain(r.code);
    expect(r.stderr.trim().split("\n").length).toBe(1);
    results.cli++;
  });
  test("bad numbers and sizes", () => {
    for (const args of [["--cpus", "-1"], ["--cpus", "1.5"], ["--memory", "lots"], ["--disk", "-5G"], ["--cpus", "$(id)"]]) {
      const r = run(["vm", "create", "ok-name", "--image", "tiny", "--driver", "fake", ...args]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n").length).toBe(1);
      results.cli++;
    }
    stillSane();
  });
  test("workspace push: relative, root and traversal guest paths; a source that is no repo", () => {
    const repo = join(scratch, "repo");
    for (const gp of ["relative/dir", "/", "../../etc"]) {
      const r = run(["workspace", "push", "box", repo, "--guest-path", gp]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split("\n").length).toBe(1);
      results.cli++;
    }
    const r = run(["workspace", "push", "box", scratch, "--guest-path", join(guestRoot, "nope")]);
    expect(r.code).toBe(2);
    results.cli++;
    stillSane();
  });
});

guestLogin.describe("bytes arrive exactly: exec and session args/payloads through a real sshd", () => {
  test("vm exec with hostile args: each arrives as one argument, byte for byte", () => {
    const r = run(["vm", "exec", "box", "--", "printf", "<%s>\\n", ...HOSTILE_ARGS]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(HOSTILE_ARGS.map((a) => `<${a}>\n`).join(""));
    results.bytes++;
  });
  test("vm exec --stdin: 2 MiB of binary stdin (over the 1 MiB JSON cap of other routes) arrives exactly", () => {
    const data = Buffer.from(crypto.getRandomValues(new Uint8Array(2 << 20)));
    const p = Bun.spawnSync([BANGER, "vm", "exec", "box", "--stdin", "--", "sha256sum"], { env: { ...h.env, ...g.env }, stdin: data });
    expect(p.exitCode).toBe(0);
    expect(p.stdout.toString().split(" ")[0]).toBe(createHash("sha256").update(data).digest("hex"));
    results.bytes++;
  });

  test("session start with hostile args and cwd; stdout has exactly the args", async () => {
    const cwd = join(guestRoot, "it's $(x) `y`");
    mkdirSync(cwd, { recursive: true });
    const s = run(["session", "start", "box", "--name", "args", "--stdin", "closed", "--cwd", cwd, "--", "bash", "-c", 'printf "<%s>" "$@"; pwd', "x", ...HOSTILE_ARGS]);
    expect(s.code).toBe(0);
    const want = HOSTILE_ARGS.map((a) => `<${a}>`).join("") + cwd + "\n";
    expect(await waitFor(() => run(["session", "logs", "box", "args"]).stdout === want, 5000, 100)).toBe(true);
    results.bytes++;
    stillSane(["args"]);
  });
  test("send: 0 B dials nothing; hostile text, NUL bytes and 50 MB arrive exactly", async () => {
    const s = run(["session", "start", "box", "--name", "sink", "--", "bash", "-c", `exec cat > ${JSON.stringify(join(guestRoot, "sink.out"))}`]);
    expect(s.code).toBe(0);
    const empty = run(["session", "send", "box", "sink", "--json"], "");
    expect(empty.json().bytesWritten).toBe(0);
    const text = "it's; $(touch /tmp/banger-pwned) `id`\n\"q\"\\n\r\n";
    const nul = Buffer.from([0, 1, 2, 0, 255, 10, 0]);
    const big = Buffer.alloc(50 << 20);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 0xff;
    const file = (n: string, b: Buffer | string) => {
      writeFileSync(join(scratch, n), b);
      return join(scratch, n);
    };
    const sent = [Buffer.from(text), nul, big];
    for (const [i, b] of sent.entries()) {
      const r = run(["session", "send", "box", "sink", "--file", file(`p${i}`, b), "--json"]);
      expect(r.stderr).toBe("");
      expect(r.json().bytesWritten).toBe(b.length);
    }
    const want = Buffer.concat(sent);
    const hash = (b: Buffer) => createHash("sha256").update(b).digest("hex");
    expect(await waitFor(() => {
      try {
        return readFileSync(join(guestRoot, "sink.out")).length === want.length;
      } catch {
        return false;
      }
    }, 20_000, 100)).toBe(true);
    expect(hash(readFileSync(join(guestRoot, "sink.out")))).toBe(hash(want));
    results.bytes += 4;
    stillSane(["args", "sink"]);
  }, 60_000);
});

describe("socket: malformed, oversized, nested JSON; unknown fields; wrong types → 4xx envelope", () => {
  const nested = (n: number) => "[".repeat(n) + "]".repeat(n);
  const cases: [string, string, string, string | Uint8Array | undefined, number][] = [
    ["malformed JSON", "POST", "/v1/vms", "{name:", 400],
    ["truncated JSON", "POST", "/v1/vms", '{"name":"x"', 400],
    ["JSON array", "POST", "/v1/vms", "[]", 400],
    ["JSON string", "POST", "/v1/vms", '"x"', 400],
    ["JSON null", "POST", "/v1/vms", "null", 400],
    ["deeply nested array (100k)", "POST", "/v1/vms", nested(100_000), 400],
    ["deeply nested object in a field", "POST", "/v1/vms", `{"name":${"{\"a\":".repeat(10_000)}1${"}".repeat(10_000)}}`, 400],
    ["oversized JSON (8 MiB)", "POST", "/v1/vms", `{"name":"${"a".repeat(8 << 20)}"}`, 413],
    ["unknown field", "POST", "/v1/vms", '{"name":"ok","evil":true}', 400],
    ["__proto__ field", "POST", "/v1/vms", '{"name":"ok","__proto__":{"admin":true}}', 400],
    ["name wrong type", "POST", "/v1/vms", '{"name":5}', 400],
    ["name missing", "POST", "/v1/vms", "{}", 400],
    ["name with NUL", "POST", "/v1/vms", '{"name":"a\\u0000b"}', 400],
    ["name ../x", "POST", "/v1/vms", '{"name":"../x"}', 400],
    ["cpus as string", "POST", "/v1/vms", '{"name":"ok","cpus":"2"}', 400],
    ["cpus fractional", "POST", "/v1/vms", '{"name":"ok","cpus":1.5}', 400],
    ["cpus negative", "POST", "/v1/vms", '{"name":"ok","image":"tiny","driver":"fake","cpus":-1}', 400],
    ["memory huge", "POST", "/v1/vms", '{"name":"ok","image":"tiny","driver":"fake","memoryMiB":1e400}', 400],
    ["start as string", "POST", "/v1/vms", '{"name":"ok","start":"yes"}', 400],
    ["unknown driver", "POST", "/v1/vms", '{"name":"ok","image":"tiny","driver":"../../bin/sh"}', 400],
    ["exec argv not array", "POST", "/v1/vms/box/exec", '{"argv":"id"}', 400],
    ["exec argv numbers", "POST", "/v1/vms/box/exec", '{"argv":[1,2]}', 400],
    ["exec argv empty", "POST", "/v1/vms/box/exec", '{"argv":[]}', 400],
    ["exec argv with NUL", "POST", "/v1/vms/box/exec", '{"argv":["printf","a\\u0000b"]}', 400],
    ["stop timeout wrong type", "POST", "/v1/vms/box/stop", '{"timeoutMs":"soon"}', 400],
    ["session command missing", "POST", "/v1/vms/box/sessions", '{"name":"s"}', 400],
    ["session command with NUL", "POST", "/v1/vms/box/sessions", '{"name":"nul","command":"printf","args":["a\\u0000b"]}', 400],
    ["session stdin mode bogus", "POST", "/v1/vms/box/sessions", '{"name":"s","command":"true","stdinMode":"tty"}', 400],
    ["session name traversal", "POST", "/v1/vms/box/sessions", '{"name":"../s","command":"true"}', 400],
    ["session args wrong type", "POST", "/v1/vms/box/sessions", '{"command":"true","args":"a b"}', 400],
    ["workspace source relative", "POST", "/v1/vms/box/workspace", '{"sourcePath":"repo"}', 400],
    ["workspace readOnly wrong type", "POST", "/v1/vms/box/workspace", '{"sourcePath":"/x","readOnly":"yes"}', 400],
    ["session logs offset negative", "GET", "/v1/vms/box/sessions/args/logs?offset=-1", undefined, 400],
    ["session logs offset text", "GET", "/v1/vms/box/sessions/args/logs?offset=abc", undefined, 400],
    ["session logs stream bogus", "GET", "/v1/vms/box/sessions/args/logs?stream=../../etc/passwd", undefined, 400],
    ["vm logs offset negative", "GET", "/v1/vms/box/logs?offset=-5", undefined, 400],
    ["vm logs offset text", "GET", "/v1/vms/box/logs?offset=1e999", undefined, 400],
    ["encoded traversal in vm id", "GET", "/v1/vms/..%2F..%2Fetc%2Fpasswd", undefined, 400],
    ["unknown route", "GET", "/v1/nope", undefined, 404],
    ["outside /v1", "GET", "/etc/passwd", undefined, 404],
    ["wrong method", "PATCH", "/v1/vms", "{}", 405],
    ["unknown vm", "GET", "/v1/vms/no-such-vm", undefined, 404],
  ];
  // the session-log cases ask about the session "args" the byte-exact tests started (which need a guest login)
  for (const [label, method, path, body, status] of cases) (label.startsWith("session logs") ? guestLogin : { test }).test(label, async () => {
    const r = await api(method, path, body, body !== undefined ? { "content-type": "application/json" } : {});
    expect(r.status).toBe(status);
    expect(r.json?.error?.code).toMatch(/^E_[A-Z_]+$/);
    expect(r.json.error.message.length).toBeGreaterThan(0);
    expect(r.json.error.message.length).toBeLessThan(500); // a sentence, never a stack or an echo of a huge input
    expect(r.text).not.toContain("    at ");
    results.api++;
    stillSane(["args", "sink"]);
  });

  test("a 50 MB JSON body is refused (413) without the daemon buffering it", async () => {
    const r = await api("POST", "/v1/vms", `{"name":"${"a".repeat(50 << 20)}"}`, { "content-type": "application/json" });
    expect(r.status).toBe(413);
    results.api++;
    stillSane(["args", "sink"]);
  });
});

describe("slowloris", () => {
  test("a client sending one byte a second is cut off, and everyone else is served meanwhile", async () => {
    const start = Date.now();
    const slow = (msg: string) =>
      new Promise<number>((resolve) => {
        const c = connect(sock());
        let i = 0;
        const iv = setInterval(() => {
          if (i < msg.length) c.write(msg[i++]!);
        }, 1000);
        const done = () => {
          clearInterval(iv);
          c.destroy();
          resolve(Date.now() - start);
        };
        c.on("close", done);
        c.on("error", done);
        setTimeout(done, 40_000);
      });
    const headers = slow("GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + "a".repeat(100) + "\r\n\r\n");
    const body = slow("POST /v1/vms HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n" + " ".repeat(200));
    // meanwhile: others get answers at normal speed
    let served = 0;
    for (let i = 0; i < 10; i++) {
      const t = performance.now();
      expect(run(["vm", "list", "--json"]).code).toBe(0);
      expect(performance.now() - t).toBeLessThan(2000);
      served++;
      await Bun.sleep(500);
    }
    const [a, b] = await Promise.all([headers, body]);
    expect(a).toBeLessThan(30_000);
    expect(b).toBeLessThan(30_000);
    expect(served).toBe(10);
    results.api += 2;
    stillSane(["args", "sink"]);
  }, 60_000);
});
