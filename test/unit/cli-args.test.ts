import { describe, expect, test } from "bun:test";
import { intArg, sizeArg } from "../../src/cli/context.ts";
import { BangerError } from "../../src/shared/errors.ts";

function usageError(fn: () => unknown): BangerError {
  try {
    fn();
  } catch (e) {
    return e as BangerError;
  }
  throw new Error("expected a usage error");
}

describe("sizeArg (→ MiB)", () => {
  test.each([
    ["512M", 512],
    ["512m", 512],
    ["2G", 2048],
    ["2g", 2048],
    ["512", 512],
    ["0", 0],
    ["1G", 1024],
    ["512MiB", 512],
    ["2GiB", 2048],
    ["256MB", 256],
    [512, 512],
  ] as const)("%j → %d", (input, mib) => {
    expect(sizeArg(input, "--memory")).toBe(mib);
  });

  test("absent values stay undefined", () => {
    expect(sizeArg(undefined, "--memory")).toBeUndefined();
    expect(sizeArg("", "--memory")).toBeUndefined();
  });

  test.each(["abc", "-1", "1.5G", "2T", "G", "M512", " 512M", "512 M", "2K", "1e3"])("%j → E_USAGE (exit 2) naming the flag and the form", (input) => {
    const err = usageError(() => sizeArg(input, "--memory"));
    expect(err).toBeInstanceOf(BangerError);
    expect(err.code).toBe("E_USAGE");
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain("--memory");
    expect(err.message).toContain("512M or 2G");
    expect(err.message).toContain(JSON.stringify(input));
  });

  // Minor (src/cli/context.ts sizeArg): the optional `(i?B)?` suffix is allowed
  // without a unit letter, so "512B" (bytes, to most people) is read as 512 MiB
  // and "512iB" is accepted. Suggested regex: /^(\d+)(?:([MmGg])(?:i?B)?)?$/.
  test("a bare B suffix is rejected rather than read as MiB", () => {
    expect(usageError(() => sizeArg("512B", "--memory")).code).toBe("E_USAGE");
    expect(usageError(() => sizeArg("512iB", "--memory")).code).toBe("E_USAGE");
  });
});

describe("intArg", () => {
  test.each([
    ["4", 4],
    [4, 4],
    ["0", 0],
    ["2048", 2048],
  ] as const)("%j → %d", (input, n) => {
    expect(intArg(input, "--cpus")).toBe(n);
  });

  test("absent values stay undefined", () => {
    expect(intArg(undefined, "--cpus")).toBeUndefined();
    expect(intArg("", "--cpus")).toBeUndefined();
  });

  test.each(["-1", "1.5", "abc", "two", "NaN", "Infinity"])("%j → E_USAGE naming the flag", (input) => {
    const err = usageError(() => intArg(input, "--cpus"));
    expect(err.code).toBe("E_USAGE");
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain("--cpus must be a whole number");
  });
});

describe("simpleArgs: the fast path parses as citty does, or leaves it to citty", () => {
  type Cmd = { args?: unknown; run?: unknown; subCommands?: unknown };
  const get = async <T,>(v: unknown): Promise<T> => (typeof v === "function" ? await (v as () => T)() : (v as T));

  /** Every command with a run() in the real tree, with its path. */
  async function leaves(): Promise<{ path: string; defs: Record<string, { type?: string; required?: boolean; alias?: unknown }> }[]> {
    const { main } = await import("../../src/cli/main.ts");
    const out: { path: string; defs: Record<string, { type?: string; required?: boolean }> }[] = [];
    const walk = async (cmd: Cmd, path: string[]) => {
      if (cmd.run) out.push({ path: path.join(" "), defs: (await get(cmd.args)) ?? {} });
      const subs = (await get<Record<string, unknown>>(cmd.subCommands)) ?? {};
      for (const [name, sub] of Object.entries(subs)) await walk(await get<Cmd>(sub), [...path, name]);
    };
    await walk(main as Cmd, []);
    return out;
  }

  test("for positionals and --boolean flags (also kebab-case), every command gets citty's values", async () => {
    const { simpleArgs } = await import("../../src/cli/main.ts");
    const { parseArgs } = await import("citty");
    const all = await leaves();
    expect(all.map((l) => l.path)).toContain("vm list");
    let compared = 0;
    for (const { path, defs } of all) {
      const positionals = Object.entries(defs).filter(([, d]) => d.type === "positional").map(([n]) => `${n}-value`);
      const booleans = Object.entries(defs).filter(([, d]) => d.type === "boolean").map(([n]) => n);
      const kebab = (n: string) => n.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());
      const argvs = [positionals, [...positionals, "extra"], ...booleans.map((b) => [`--${kebab(b)}`, ...positionals]), [...positionals, ...booleans.map((b) => `--${b}`)]];
      const needsFlag = Object.values(defs).some((d) => d.type !== "positional" && d.required);
      for (const argv of argvs) {
        const mine = simpleArgs(defs as never, argv);
        if (needsFlag) {
          expect([path, argv, mine]).toEqual([path, argv, null]); // `vm run --name X`: citty's
          continue;
        }
        expect([path, argv, mine === null]).toEqual([path, argv, false]);
        const theirs = parseArgs(argv, defs as never) as Record<string, unknown>;
        for (const k of [...Object.keys(defs), "_"]) expect([path, argv, k, mine![k]]).toEqual([path, argv, k, theirs[k]]);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(40);
  });

  test("anything else goes to citty: strings, =, --no-, short aliases, a missing required positional", async () => {
    const { simpleArgs } = await import("../../src/cli/main.ts");
    const defs = { name: { type: "positional", required: true }, json: { type: "boolean" }, image: { type: "string" }, follow: { type: "boolean", alias: "f" } } as const;
    expect(simpleArgs(defs, ["x", "--json"])).toEqual({ _: ["x"], name: "x", json: true });
    for (const argv of [["x", "--image", "i"], ["x", "--json=false"], ["x", "--no-json"], ["x", "-f"], ["--json"], ["x", "-"], ["x", "--bogus"]]) {
      expect([argv, simpleArgs(defs, argv)]).toEqual([argv, null]);
    }
  });
});

describe("joinNegativeValues: `--depth -1` is the option's value, not an unknown option -1", () => {
  test("a value option (long, kebab or short alias) takes a following negative number; booleans, positionals and other words do not", async () => {
    const { joinNegativeValues } = await import("../../src/cli/main.ts");
    const defs = { vm: { type: "positional" }, maxDepth: { type: "string", alias: "d" }, offset: { type: "string" }, json: { type: "boolean" } } as const;
    expect(joinNegativeValues(defs, ["box", "--max-depth", "-1"])).toEqual(["box", "--max-depth=-1"]);
    expect(joinNegativeValues(defs, ["box", "--maxDepth", "-1", "--offset", "-5"])).toEqual(["box", "--maxDepth=-1", "--offset=-5"]);
    expect(joinNegativeValues(defs, ["-d", "-2", "box"])).toEqual(["--maxDepth=-2", "box"]);
    expect(joinNegativeValues(defs, ["--json", "-1"])).toEqual(["--json", "-1"]);
    expect(joinNegativeValues(defs, ["--offset", "-x"])).toEqual(["--offset", "-x"]);
    expect(joinNegativeValues(defs, ["--offset"])).toEqual(["--offset"]);
  });
});

describe("extraWord: a word more than the command's positionals is an error, not dropped", () => {
  test("option values are not words; `=` forms carry their own; `-` is a word; the tail after `--` counts", async () => {
    const { extraWord } = await import("../../src/cli/main.ts");
    const defs = { name: { type: "positional" }, image: { type: "string", alias: "i" }, json: { type: "boolean" } } as const;
    expect(extraWord(defs, ["box"], [])).toBeNull();
    expect(extraWord(defs, ["box", "--image", "img", "--json"], [])).toBeNull();
    expect(extraWord(defs, ["-i", "img", "box"], [])).toBeNull();
    expect(extraWord(defs, ["--image=img", "box", "two"], [])).toBe("two");
    expect(extraWord(defs, ["box", "two", "three"], [])).toBe("two");
    expect(extraWord(defs, ["box"], ["-dash"])).toBe("-dash");
    expect(extraWord(defs, ["-", "box"], [])).toBe("box");
    expect(extraWord({}, [], [])).toBeNull();
  });
});
