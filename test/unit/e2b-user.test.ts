// One rule for who an envd call acts for (src/daemon/e2b/envd/user.ts), for
// processes and files alike: what the SDK names (the /files `username`
// query, then Basic authorization), else `user`, or root where the guest has
// no `user`; hostile names pass as values or are refused as envd refuses
// them; and the guest half of the default (run-as.sh's RUN_USER_OPTIONAL),
// run by a real bash.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BangerError } from "../../src/shared/errors.ts";
import { renderScript } from "../../src/shared/quote.ts";
import { DEFAULT_USER, EnvdUserError, callUser, sessionUser, unknownUserMessage, userRefusal } from "../../src/daemon/e2b/envd/user.ts";
import { createEnvd, type EnvdDeps, type EnvdSandbox } from "../../src/daemon/e2b/envd/index.ts";
import { registerFilesystem } from "../../src/daemon/e2b/envd/filesystem.ts";
import { filesEndpoint } from "../../src/daemon/e2b/envd/files.ts";
import { statScript } from "../../src/daemon/e2b/envd/fs-scripts.ts";
import GETENT_SH from "../../src/sessions/scripts/getent.sh" with { type: "text" };
import RUN_AS_SH from "../../src/sessions/scripts/run-as.sh" with { type: "text" };
import USER_SH from "../../src/daemon/e2b/envd/scripts/user.sh" with { type: "text" };
import { sampleVM } from "../helpers/fakes.ts";
import { HOSTILE_NAMES } from "../helpers/tree.ts";

const basic = (s: string) => `Basic ${Buffer.from(s).toString("base64")}`;
// names the guest scripts take as values (quotes, `;`, `$()`, backticks, leading dashes)
const PASSABLE = HOSTILE_NAMES.filter((n) => !n.includes("\n"));

describe("callUser: the one rule", () => {
  test("named: the /files query first, then Basic (the name before the first colon, as Go's BasicAuth); not the default", () => {
    expect(callUser({ query: "bob", authorization: basic("alice:") })).toEqual({ name: "bob", defaulted: false });
    expect(callUser({ authorization: basic("alice:") })).toEqual({ name: "alice", defaulted: false });
    expect(callUser({ authorization: basic("alice:secret:x") })).toEqual({ name: "alice", defaulted: false });
    expect(callUser({ authorization: basic("root:") })).toEqual({ name: "root", defaulted: false });
    // base64url too (no SDK sends it; it costs nothing)
    expect(callUser({ authorization: `Basic ${Buffer.from("a>b?:").toString("base64url")}` })).toEqual({ name: "a>b?", defaulted: false });
  });

  test("nobody named (no header, not Basic, an empty name or query: the SDK sends none): the default user, marked", () => {
    const dflt = { name: DEFAULT_USER, defaulted: true };
    expect(DEFAULT_USER).toBe("user");
    expect(callUser({})).toEqual(dflt);
    expect(callUser({ query: null, authorization: null })).toEqual(dflt);
    expect(callUser({ authorization: "Bearer abc" })).toEqual(dflt);
    expect(callUser({ authorization: "Basic !!not-base64!!" })).toEqual(dflt);
    expect(callUser({ authorization: basic(":") })).toEqual(dflt);
    expect(callUser({ authorization: basic("") })).toEqual(dflt);
    expect(callUser({ query: "", authorization: basic(":pw") })).toEqual(dflt);
  });

  test("names the scripts carry as values pass as they are: quotes, `;`, `$()`, backticks, dashes", () => {
    for (const n of PASSABLE) {
      expect(callUser({ authorization: basic(`${n}:`) })).toEqual({ name: n, defaulted: false });
      expect(callUser({ query: n })).toEqual({ name: n, defaulted: false });
    }
  });

  test("a name no account can have (newline, NUL, other control characters, a colon from the query) is refused as envd does", () => {
    for (const n of ["new\nline", "nul\0x", "tab\tx", "del\x7f", "root:root"]) {
      const sent = n.includes(":") ? { query: n } : { authorization: basic(`${n}:`) };
      expect(() => callUser(sent)).toThrow(EnvdUserError);
      expect(() => callUser(sent)).toThrow(`invalid username: ${JSON.stringify(n)}`);
    }
  });

  test("as a session's user: root runs as the login (no switch), a named user must exist, the default may be missing", () => {
    expect(sessionUser({ name: "root", defaulted: false })).toEqual({});
    expect(sessionUser({ name: "alice", defaulted: false })).toEqual({ user: "alice" });
    expect(sessionUser({ name: "user", defaulted: true })).toEqual({ user: "user", userOptional: true });
  });

  test("a session refused for its user is envd's unknown-user error; other refusals stay what they are", () => {
    const who = { name: "it's;$(x)", defaulted: false };
    const guest = new BangerError("E_BAD_REQUEST", "no such user in the guest: it's;$(x)");
    const refused = userRefusal(new BangerError("E_BAD_REQUEST", `session s failed at stage "launch": ${guest.message}`, { cause: guest }), who);
    expect(refused).toBeInstanceOf(EnvdUserError);
    expect((refused as Error).message).toBe("error looking up user 'it's;$(x)': unknown user");
    const other = new BangerError("E_BAD_REQUEST", "no such directory in the guest: /x");
    expect(userRefusal(other, who)).toBe(other);
    // the guest's files scripts say the same words
    expect(USER_SH).toContain(`fail "$NO_USER_EXIT" "${unknownUserMessage("$E2B_USER")}"`);
  });
});

/** run_as_prepare in a real bash (this host: root, no `user` account), printing AS and HOME, or the refusal. */
function runAs(vars: { RUN_USER: string; RUN_USER_OPTIONAL?: string }, marker: string) {
  const script = renderScript([GETENT_SH, RUN_AS_SH], { ...vars, RUN_CWD: "", RUN_ENV: [] });
  const r = Bun.spawnSync(["bash", "-c", `${script}\nrefuse() { echo "REFUSED $1"; exit 1; }\ncd ${marker} || exit 9\nrun_as_prepare\nprintf 'AS=%s\\n' "\${AS[*]}"`]);
  return { code: r.exitCode, out: r.stdout.toString() };
}

describe("run-as.sh: the guest half of the default user", () => {
  const hasUser = Bun.spawnSync(["getent", "passwd", "user"]).exitCode === 0;

  test.skipIf(hasUser)("the default (optional) user this guest lacks: root as is; named, it is refused; an existing one is switched to", () => {
    const dir = mkdtempSync(join(tmpdir(), "banger-run-as-"));
    try {
      expect(runAs({ RUN_USER: "user", RUN_USER_OPTIONAL: "1" }, dir)).toEqual({ code: 0, out: "AS=\n" });
      expect(runAs({ RUN_USER: "user" }, dir)).toEqual({ code: 1, out: "REFUSED no such user in the guest: user\n" });
      const nobody = runAs({ RUN_USER: "nobody", RUN_USER_OPTIONAL: "1" }, dir);
      expect(nobody.code).toBe(0);
      expect(nobody.out).toMatch(/^AS=setpriv --reuid=\d+ --regid=\d+ --init-groups --\n$/);
      // hostile names are names, never code: refused verbatim, nothing run
      for (const n of PASSABLE) {
        const r = runAs({ RUN_USER: n }, dir);
        expect(r).toEqual({ code: 1, out: `REFUSED no such user in the guest: ${n}\n` });
      }
      expect(existsSync(join(dir, "pwned"))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the rule at both doors, before any guest call", () => {
  function envd() {
    const guestCalls: string[] = [];
    const deps = { ssh: { get: async () => (guestCalls.push("dial"), Promise.reject(new Error("no guest here"))) } } as unknown as EnvdDeps;
    const sandbox: EnvdSandbox = { id: "sb", vm: sampleVM({ name: "sb" }), envVars: {} };
    const e = createEnvd(deps, [registerFilesystem], [filesEndpoint]);
    return { guestCalls, call: (req: Request) => e.handle(req, sandbox) };
  }

  test("/files?username= a name no account can have: 401 in envd's body, the guest never asked", async () => {
    const g = envd();
    for (const n of ["a\nb", "root:root"]) {
      const res = await g.call(new Request(`http://envd/files?path=x&username=${encodeURIComponent(n)}`));
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({ code: 401, message: `invalid username: ${JSON.stringify(n)}` });
    }
    expect(g.guestCalls).toEqual([]);
  });

  test("filesystem Stat with such a Basic user: Connect unauthenticated (the SDK's AuthenticationError), the guest never asked", async () => {
    const g = envd();
    const res = await g.call(
      new Request("http://envd/filesystem.Filesystem/Stat", {
        method: "POST",
        headers: { "content-type": "application/json", "connect-protocol-version": "1", authorization: basic("a\nb:") },
        body: JSON.stringify({ path: "x" }),
      }),
    );
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: "unauthenticated", message: 'invalid username: "a\\nb"' });
    expect(g.guestCalls).toEqual([]);
  });

  test("the files scripts get the same user and default mark as a process would", () => {
    expect(statScript(callUser({}), "x")).toContain("E2B_USER='user'");
    expect(statScript(callUser({}), "x")).toContain("DEFAULTED='1'");
    expect(statScript(callUser({ authorization: basic("it's:") }), "x")).toContain(`E2B_USER='it'\\''s'`);
  });
});
