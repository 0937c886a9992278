import { describe, expect, test } from "bun:test";
import { EXPECTED, goalMet, makeRow, mergeRows, previousRows, toJson, toMarkdown, type Machine, type ResultRow } from "../../scripts/bench/results.ts";
import { summarize } from "../../scripts/bench/stats.ts";

const machine: Machine = { cores: 2, memoryBytes: 24 * 1024 ** 3, kernel: "6.1.0-test", kvmUsable: false, kvmReason: "/dev/kvm is kvm_pvm", cpuModel: "Test CPU", loadAvg: [7.41, 6.9, 5.24] };
const T1 = "2026-11-27T18:00:00.000Z";
const T2 = "2026-11-27T19:00:00.000Z";

describe("goalMet", () => {
  test("ratio and value goals, both bounds, missing figure", () => {
    expect(goalMet({ on: "ratio", max: 1.3, text: "" }, 30, 1.29)).toBe(true);
    expect(goalMet({ on: "ratio", max: 1.3, text: "" }, 30, 1.31)).toBe(false);
    expect(goalMet({ on: "value", max: 1000, text: "" }, 1001, 9)).toBe(false);
    expect(goalMet({ on: "value", min: 5, text: "" }, 4, undefined)).toBe(false);
    expect(goalMet({ on: "ratio", max: 2, text: "" }, 4, undefined)).toBeNull();
    expect(goalMet(undefined, 4, 1)).toBeNull();
  });
});

describe("makeRow", () => {
  test("ratio of medians to the baseline, min/median/p99 of the sample, goal checked", () => {
    const r = makeRow({
      id: "P1", section: "cli", measure: "vm list", stats: summarize([30, 40, 50]),
      baseline: { name: "hello", stats: summarize([10, 20, 30]) }, goal: { on: "ratio", max: 1.3, text: "≤ 1.3×" },
    }, T1, "abc");
    expect(r).toMatchObject({ id: "P1", n: 3, min: 30, median: 40, ratio: 2, met: false, status: "measured", at: T1, sha: "abc", baseline: { name: "hello", median: 20 } });
    expect(r.p99).toBeCloseTo(49.8, 10);
  });

  test("no baseline: no ratio; a value goal is still checked", () => {
    const r = makeRow({ id: "P5", section: "recovery", measure: "rss", unit: "bytes", stats: summarize([70]), goal: { on: "value", max: 80, text: "" } }, T1, "abc");
    expect(r.ratio).toBeUndefined();
    expect(r.met).toBe(true);
  });
});

describe("mergeRows", () => {
  const row = (id: string, section: string, at: string): ResultRow => makeRow({ id, section, measure: `${section} m`, stats: summarize([1]) }, at, at === T1 ? "old" : "new");

  test("keeps earlier rows of sections not run now, replaces those run now, fills the rest with not-run rows, ordered by id", () => {
    const previous = [row("P2", "exec", T1), row("P1", "cli", T1), row("P5", "recovery", T1)];
    const current = [row("P5", "recovery", T2), row("P1", "cli", T2)];
    const rows = mergeRows(current, ["recovery", "cli"], previous, T2, "new");
    expect(rows.map((r) => [r.id, r.section, r.at])).toEqual([
      ["P1", "cli", T2],
      ["P2", "exec", T1],
      ["P3", "-", T2],
      ["P4", "-", T2],
      ["P5", "recovery", T2],
      ["P6", "-", T2],
      ["P7", "-", T2],
    ]);
    expect(rows.filter((r) => r.status === "not run").map((r) => r.id)).toEqual(["P3", "P4", "P6", "P7"]);
    expect(rows.find((r) => r.id === "P4")!.measure).toContain("not run");
  });

  test("a failed section (not in ranSections) keeps its previous rows; old placeholders are not carried", () => {
    const previous = [row("P2", "exec", T1), { ...row("P4", "-", T1), status: "not run" as const }];
    const rows = mergeRows([], [], previous, T2, "new");
    expect(rows.find((r) => r.id === "P2")!.at).toBe(T1);
    expect(rows.find((r) => r.id === "P4")!.at).toBe(T2);
    expect(rows).toHaveLength(EXPECTED.length);
  });
});

describe("json and markdown", () => {
  const rows = mergeRows([
    makeRow({ id: "P1", section: "cli", measure: "vm list | json", stats: summarize([26, 27]), baseline: { name: "hello", stats: summarize([9, 9]) }, goal: { on: "ratio", max: 1.3, text: "≤ 1.3× hello-world" } }, T2, "new"),
    makeRow({ id: "P5", section: "recovery", measure: "rss idle", unit: "bytes", stats: summarize([62 * 1024 * 1024]), goal: { on: "value", max: 80 * 1024 * 1024, text: "≤ 80 MiB" } }, T2, "new"),
  ], ["cli", "recovery"], [makeRow({ id: "P2", section: "exec", measure: "exec", stats: summarize([100]) }, T1, "old")], T2, "new");
  const res = { machine, date: T2, sha: "new", mode: "full" as const, rows };

  test("JSON has null for the placeholders' numbers and reads back", () => {
    const text = toJson(res);
    expect(text).not.toContain("NaN");
    const parsed = JSON.parse(text);
    expect(parsed.machine).toEqual(machine);
    expect(parsed.rows.find((r: ResultRow) => r.id === "P4").median).toBeNull();
    const back = previousRows(text);
    expect(back).toHaveLength(rows.length);
    expect(Number.isNaN(back.find((r) => r.id === "P4")!.median)).toBe(true);
    expect(previousRows("not json")).toEqual([]);
    expect(previousRows(null)).toEqual([]);
  });

  test("Markdown names the machine and shows goal, met/missed, carried-over and not-run rows", () => {
    const md = toMarkdown(res);
    expect(md).toContain("2 cores (Test CPU)");
    expect(md).toContain("KVM not usable (/dev/kvm is kvm_pvm); load average 7.4 / 6.9 / 5.2 at the end of the run");
    expect(md).toContain(`git new`);
    expect(md).toContain("| P1 | vm list \\| json | 2 | 26.0 ms | 26.5 ms |");
    expect(md).toContain("| 2.94× | ≤ 1.3× hello-world | **missed** |");
    expect(md).toContain("| 62.0 MiB |");
    expect(md).toContain("| ≤ 80 MiB | met |");
    expect(md).toContain(`exec (from the run of ${T1}, git old)`);
    expect(md).toMatch(/\| P4 \| workspace[^\n]*not run \|[^\n]*\| not run \|/);
  });
});
