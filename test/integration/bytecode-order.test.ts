// scripts/build.sh builds dist/banger twice, the second time laid out by the bytecode an early
// `vm list --json` ran (scripts/bytecode-order.ts, P1 in bench/results.md). The recording is
// not fatal to a build, so this holds that it works: a failure here is a silently slower binary.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BANGER, ROOT } from "../helpers/cli.ts";

const dir = mkdtempSync(join(tmpdir(), "banger-order-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the built binary records the bytecode of an early vm list --json against the stand-in daemon", () => {
  const out = join(dir, "order.txt");
  const p = Bun.spawnSync([process.execPath, join(ROOT, "scripts/bytecode-order.ts"), BANGER, out], { stderr: "pipe" });
  expect(p.stderr.toString()).toBe("");
  expect(p.exitCode).toBe(0);
  // the script itself checked the run was the early path (one GET, `[]` printed); Bun wrote what it ran
  expect(readFileSync(out, "utf8").split("\n").length).toBeGreaterThan(10);
});

test("a binary without bytecode to record is refused, not recorded as empty", () => {
  const p = Bun.spawnSync([process.execPath, join(ROOT, "scripts/bytecode-order.ts"), "/bin/true", join(dir, "none.txt")], { stderr: "pipe" });
  expect(p.exitCode).not.toBe(0);
  expect(p.stderr.toString()).toContain("not an early vm list");
});
