import { describe, expect, test } from "bun:test";
import { checkExecOptions, envArg, parseDuration, parseEnvFile } from "../../src/shared/exec-options.ts";
import { BangerError } from "../../src/shared/errors.ts";
import { execOptionsFrom, repeatedArg } from "../../src/cli/exec-args.ts";
import { execCommandLine, REFUSED_EXIT, refusalWatch, secondsArg } from "../../src/sessions/exec.ts";
import { pickVMName } from "../../src/shared/vm-names.ts";
import { candidates, type NameSource } from "../../src/cli/complete.ts";
import { main } from "../../src/cli/main.ts";
import { VM_NAME_RE } from "../../src/shared/model.ts";

function err(fn: () => unknown): BangerError {
  try {
    fn();
  } catch (e) {
    return e as BangerError;
  }
  throw new Error("expected an error");
}

describe("parseDuration", () => {
  test.each([
    ["500ms", 500],
    ["2s", 2000],
    ["1.5s", 1500],
    ["5m", 300_000],
    ["1h", 3_600_000],
    ["1m30s", 90_000],
    ["3", 3000],
    ["0.25", 250],
  ] as const)("%s → %d ms", (v, ms) => expect(parseDuration(v)).toBe(ms));

  test.each(["", "abc", "2d", "-1s", "1s2", "s", "2 s", "0", "0ms", "25h", "1e3s"])("%j → E_USAGE (exit 2)", (v) => {
    const e = err(() => parseDuration(v));
    expect(e.code).toBe("E_USAGE");
    expect(e.exitCode).toBe(2);
    expect(e.message).toStartWith("--timeout must be");
  });
});

describe("env arguments (Docker's -e and --env-file)", () => {
  const lookup = (n: string) => ({ HOME_VAL: "/h", EMPTY: "" })[n];
  test("KEY=VALUE as given, values untouched; a bare KEY takes the lookup's value or is dropped", () => {
    expect(envArg("A=it's; $(x)\nz", lookup)).toBe("A=it's; $(x)\nz");
    expect(envArg("A=", lookup)).toBe("A=");
    expect(envArg("A==b", lookup)).toBe("A==b");
    expect(envArg("HOME_VAL", lookup)).toBe("HOME_VAL=/h");
    expect(envArg("EMPTY", lookup)).toBe("EMPTY=");
    expect(envArg("UNSET", lookup)).toBeNull();
  });
  test.each(["=x", "1A=x", "A-B=x", "A B=x", "", "a\nb", "é=1"])("%j → E_USAGE", (v) => {
    const e = err(() => envArg(v, lookup));
    expect(e.code).toBe("E_USAGE");
    expect(e.message).not.toContain("\n");
  });
  test("a NUL in a value is refused", () => expect(err(() => envArg("A=a\0b", lookup)).code).toBe("E_USAGE"));
  test("env file: comments, blanks, CRLF, leading blanks, bare keys, literal quotes; errors name file:line", () => {
    expect(parseEnvFile("# c\n\nA=1\r\n  B='q'\nHOME_VAL\nUNSET\nC=x=y # not a comment\n", "f.env", lookup)).toEqual(["A=1", "B='q'", "HOME_VAL=/h", "C=x=y # not a comment"]);
    const e = err(() => parseEnvFile("A=1\n1B=2\n", "f.env", lookup));
    expect(e.message).toBe(`f.env:2: "1B=2": bad env name "1B" (letters, digits and '_', not starting with a digit)`);
  });
  test("repeatedArg: every -e/--env in order, both spellings, never past --", () => {
    expect(repeatedArg(["vm", "exec", "x", "-e", "A=1", "--env=B=2", "-e=C=3", "--env", "D", "--", "-e", "E=5"], "env", "e")).toEqual(["A=1", "B=2", "C=3", "D"]);
    expect(err(() => repeatedArg(["-e"], "env", "e")).message).toBe("-e needs a value");
    expect(err(() => repeatedArg(["-e", "--"], "env", "e")).message).toBe("-e needs a value");
  });
  test("execOptionsFrom: env files first, then -e (so -e wins), options checked", async () => {
    const files: Record<string, string> = { "/a.env": "A=file\nB=file\n" };
    const o = await execOptionsFrom({ cwd: "/w", user: "u:g", timeout: "2s" }, ["--env-file", "/a.env", "-e", "A=flag"], async (p) => files[p] ?? null, lookup);
    expect(o).toEqual({ env: ["A=file", "B=file", "A=flag"], cwd: "/w", user: "u:g", timeoutMs: 2000 });
    expect(await execOptionsFrom({}, [], async () => null, lookup)).toEqual({});
    expect(await execOptionsFrom({ cwd: ["/a", "/b"], timeout: ["1s", "2s"] }, [], async () => null, lookup)).toEqual({ cwd: "/b", timeoutMs: 2000 });
    await expect(execOptionsFrom({}, ["--env-file", "/missing"], async () => null, lookup)).rejects.toThrow("--env-file /missing: no such file or not readable");
  });
  test("checkExecOptions: what the daemon refuses from any client (400)", () => {
    for (const o of [{ env: ["NOEQ"] }, { env: ["1=x"] }, { cwd: "" }, { cwd: "/a\0b" }, { user: "" }, { user: "a:" }, { user: "a:b:c" }, { user: "a\nb" }, { timeoutMs: 0 }, { timeoutMs: 1.5 }, { timeoutMs: 25 * 3600e3 }]) {
      expect(err(() => checkExecOptions(o)).code).toBe("E_BAD_REQUEST");
    }
    expect(() => checkExecOptions({ env: ["A=b c"], cwd: "/x y", user: "1000:1000", timeoutMs: 1 })).not.toThrow();
  });
  test("an id past 2^32-2 is refused (it wrapped to root in getent, or was setpriv's -1, unchanged)", () => {
    for (const user of ["4294967295", "4294967296", "99999999999", "00000000000000001", "65534:4294967296", "nobody:4294967295"]) {
      expect([user, err(() => checkExecOptions({ user })).message]).toEqual([user, expect.stringContaining("an id is at most 4294967294")]);
    }
    expect(() => checkExecOptions({ user: "4294967294:0" })).not.toThrow();
  });

});

describe("the guest command line", () => {
  test("no options: the bare quoted argv, exactly as before", () => {
    expect(execCommandLine(["echo", "a b", "it's"], {}, "t")).toBe(`'echo' 'a b' 'it'\\''s'`);
  });
  test("options: every value only ever inside single quotes; short enough for dropbear", () => {
    const line = execCommandLine(["cmd"], { env: ["A=$(x)'y"], cwd: "/d;e", user: "u", timeoutMs: 1500 }, "tok");
    expect(line).toContain(`RUN_ENV=('A=$(x)'\\''y')`);
    expect(line).toContain("RUN_CWD='/d;e'");
    expect(line).toContain("TIMEOUT='1.500'");
    expect(line.length).toBeLessThan(8000);
    expect(line.split("\n")[0]).toStartWith(`case "\${BASH_VERSION-}" in '') exec bash -c '`);
  });
  test("-u without -w: the user's home where the command would start in the login's; an image's workdir (elsewhere) stays", () => {
    // run by this host's bash as root, whose passwd home is the login's: nobody has a home it may lack (then /)
    const passwd = Bun.spawnSync(["getent", "passwd", "0"]).stdout.toString().split(":")[5]!;
    const nobodyHome = Bun.spawnSync(["getent", "passwd", "nobody"]).stdout.toString().split(":")[5]!;
    const pwdIn = (cwd: string, o: { user?: string; cwd?: string }) =>
      Bun.spawnSync(["bash", "-c", execCommandLine(["pwd"], o, "tok")], { cwd }).stdout.toString().trim();
    const fallback = Bun.spawnSync(["test", "-d", nobodyHome]).exitCode === 0 ? nobodyHome : "/";
    expect(pwdIn(passwd, { user: "nobody" })).toBe(fallback);
    expect(pwdIn("/tmp", { user: "nobody" })).toBe("/tmp");
    expect(pwdIn(passwd, { user: "nobody", cwd: "/usr" })).toBe("/usr");
    expect(pwdIn(passwd, { cwd: "/usr" })).toBe("/usr");
  });
  test("a long one falls back to handing the script to bash once", () => {
    const line = execCommandLine(["cmd"], { env: [`BIG=${"x".repeat(5000)}`] }, "tok");
    expect(line).toStartWith("exec bash -c '");
  });
  test("secondsArg is exact", () => {
    expect([1, 999, 1000, 1500, 2000, 86_400_000].map(secondsArg)).toEqual(["0.001", "0.999", "1.000", "1.500", "2.000", "86400.000"]);
  });
});

describe("refusalWatch", () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  const dec = (cs: Uint8Array[]) => Buffer.concat(cs).toString();
  test("the wrapper's line with its token and REFUSED_EXIT: a reason, nothing shown", () => {
    const shown: Uint8Array[] = [];
    const w = refusalWatch((c) => shown.push(c), "abc");
    w.onStderr(enc("banger-refused-a"));
    w.onStderr(enc("bc: no such user in the guest: x\n"));
    expect(w.finish(REFUSED_EXIT)).toBe("no such user in the guest: x");
    expect(shown).toEqual([]);
  });
  test("another token, another exit code or other output: passed through unchanged, in order", () => {
    for (const [chunks, code] of [
      [["banger-refused-zzz: x\n"], REFUSED_EXIT],
      [["banger-refused-abc: x\n"], 1],
      [["plain ", "stderr\n"], REFUSED_EXIT],
    ] as const) {
      const shown: Uint8Array[] = [];
      const w = refusalWatch((c) => shown.push(c), "abc");
      for (const c of chunks) w.onStderr(enc(c));
      expect(w.finish(code)).toBeNull();
      expect(dec(shown)).toBe(chunks.join(""));
    }
  });
  test("output not starting like the mark is not held", () => {
    const shown: Uint8Array[] = [];
    const w = refusalWatch((c) => shown.push(c), "abc");
    w.onStderr(enc("warning"));
    expect(dec(shown)).toBe("warning");
  });
});

describe("pickVMName", () => {
  const seq = (xs: number[]) => {
    let i = 0;
    return () => xs[i++ % xs.length]!;
  };
  test("adjective-noun, a valid VM name, not taken", () => {
    const name = pickVMName(new Set(), seq([0, 0]));
    expect(name).toBe("able-badger");
    expect(VM_NAME_RE.test(name)).toBe(true);
    expect(pickVMName(new Set(["able-badger"]), seq([0, 0, 0.5, 0.5]))).not.toBe("able-badger");
  });
  test("when random tries keep hitting taken names, a number makes it free", () => {
    const name = pickVMName(new Set(["able-badger", "able-badger-2"]), () => 0);
    expect(name).toBe("able-badger-3");
  });
});

describe("completion candidates come from the command definitions", () => {
  const names: NameSource = {
    vms: async () => ["box", "web"],
    images: async () => ["default"],
    sessions: async (vm) => (vm === "box" ? ["agent"] : []),
    snapshots: async (vm) => ["box@s1", "box@s2", "web@w1"].filter((r) => !vm || r.startsWith(`${vm}@`)),
  };
  test("top level: exactly main's subcommands", async () => {
    expect(await candidates(main, [""], names)).toEqual(Object.keys(main.subCommands as object).sort());
  });
  test("options of a leaf: each of its args, kebab-cased, with short aliases", async () => {
    const vm = await (main.subCommands as Record<string, () => Promise<{ subCommands: Record<string, { args: Record<string, { type: string }> }> }>>).vm!();
    const want = Object.entries(vm.subCommands.exec!.args)
      .filter(([, d]) => d.type !== "positional")
      .map(([n]) => `--${n}`);
    expect(await candidates(main, ["vm", "exec", "box", "--"], names)).toEqual(expect.arrayContaining(want));
  });
  test("names by position", async () => {
    expect(await candidates(main, ["vm", "exec", "w"], names)).toEqual(["web"]);
    expect(await candidates(main, ["vm", "exec", "box", "-e", "A=1", ""], names)).toEqual([]);
    expect(await candidates(main, ["session", "send", "box", ""], names)).toEqual(["agent"]);
    expect(await candidates(main, ["image", "rm", ""], names)).toEqual(["default"]);
    expect(await candidates(main, ["--quiet", "vm", "stop", ""], names)).toEqual(["box", "web"]);
    // snapshots: VM@SNAP where a command takes one, a VM's SNAP for rollback
    expect(await candidates(main, ["snapshot", "rm", ""], names)).toEqual(["box@s1", "box@s2", "web@w1"]);
    expect(await candidates(main, ["vm", "rollback", "box", ""], names)).toEqual(["s1", "s2"]);
    expect(await candidates(main, ["vm", "create", "new", "--from", "w"], names)).toEqual(["web@w1"]);
  });
  test("an option's value after = (bash gives the = as a word of its own, zsh and fish one word); the shells of completion", async () => {
    expect(await candidates(main, ["vm", "create", "x", "--image", "=", ""], names)).toEqual(["default"]);
    expect(await candidates(main, ["vm", "create", "x", "--image", "=", "default", "--vmm", "=", "q"], names)).toEqual(["qemu"]);
    expect(await candidates(main, ["vm", "create", "x", "--image=d"], names)).toEqual(["--image=default"]);
    expect(await candidates(main, ["vm", "create", "x", "--net=t"], names)).toEqual(["--net=tap"]);
    expect(await candidates(main, ["vm", "create", "x", "--name=x"], names)).toEqual([]);
    expect(await candidates(main, ["completion", ""], names)).toEqual(["bash", "fish", "zsh"]);
    expect(await candidates(main, ["completion", "z"], names)).toEqual(["zsh"]);
  });
});
