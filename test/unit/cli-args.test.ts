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
