import { describe, test } from "bun:test";

type TestFn = (label: string, fn: () => unknown, timeout?: number) => void;
type DescribeFn = (label: string, fn: () => void) => void;

/**
 * `test` and `describe` when the host has what they need; otherwise their
 * `.skip`, after one `skip: <label>: <reason>` line on stderr, so a run
 * without root, an image or a tool says why each test did not run.
 */
export function needs(ok: boolean, reason: string): { test: TestFn; describe: DescribeFn } {
  if (ok) return { test: test as TestFn, describe: describe as DescribeFn };
  return {
    test: (label, fn, timeout) => {
      console.warn(`skip: ${label}: ${reason}`);
      (test.skip as TestFn)(label, fn, timeout);
    },
    describe: (label, fn) => {
      console.warn(`skip: ${label}: ${reason}`);
      describe.skip(label, fn);
    },
  };
}

/** The first reason in the list whose condition fails, or "" when all hold: for `needs(!why, why)`. */
export function firstMissing(...checks: [ok: boolean, reason: string][]): string {
  return checks.find(([ok]) => !ok)?.[1] ?? "";
}

export const IS_ROOT = process.getuid?.() === 0;
