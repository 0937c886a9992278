import { expect, test } from "bun:test";
import { defaultSnapshotName, parseSnapshotRef, validateSnapshotName } from "../../src/core/snapshots.ts";
import { BangerError } from "../../src/shared/errors.ts";

const code = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    return (e as BangerError).code;
  }
  return "ok";
};

test("VM@SNAP parses; a bare SNAP takes the VM given; hostile names are E_BAD_NAME", () => {
  expect(parseSnapshotRef("box@clean")).toEqual({ vm: "box", snap: "clean" });
  expect(parseSnapshotRef("clean", "box")).toEqual({ vm: "box", snap: "clean" });
  expect(parseSnapshotRef("other@x", "box")).toEqual({ vm: "other", snap: "x" });
  for (const bad of ["clean", "", "@x", "box@", "box@a@b", "../x@y", "box@$(id)", "box@a b", "box@a\nb", "Box@x", `box@${"a".repeat(64)}`]) {
    expect([bad, code(() => parseSnapshotRef(bad))]).toEqual([bad, "E_BAD_NAME"]);
  }
  expect(code(() => validateSnapshotName("-x"))).toBe("E_BAD_NAME");
});

test("the default name is the UTC time to the millisecond, and a valid name", () => {
  const n = defaultSnapshotName(new Date("2026-12-06T04:15:30.123Z"));
  expect(n).toBe("20261206-041530-123");
  expect(validateSnapshotName(n)).toBe(n);
});
