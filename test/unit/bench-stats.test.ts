import { describe, expect, test } from "bun:test";
import { fmtBytes, fmtMs, formatTable, interleave, median, percentile, pickSections, ratio, summarize, summaryRow } from "../../scripts/bench/stats.ts";

describe("percentile", () => {
  test("interpolates between closest ranks; p0/p100 are min/max", () => {
    const xs = [10, 20, 30, 40];
    expect(percentile(xs, 0)).toBe(10);
    expect(percentile(xs, 100)).toBe(40);
    expect(percentile(xs, 50)).toBe(25);
    expect(percentile(xs, 99)).toBeCloseTo(39.7, 10);
  });

  test("does not depend on input order and does not sort the caller's array", () => {
    const xs = [5, 1, 4, 2, 3];
    expect(median(xs)).toBe(3);
    expect(xs).toEqual([5, 1, 4, 2, 3]);
  });

  test("one sample is every percentile", () => {
    expect(percentile([7], 0)).toBe(7);
    expect(percentile([7], 99)).toBe(7);
  });

  test("rejects an empty sample and out-of-range p", () => {
    expect(() => percentile([], 50)).toThrow("empty");
    expect(() => percentile([1], 101)).toThrow("0..100");
    expect(() => percentile([1], Number.NaN)).toThrow("0..100");
  });
});

describe("summarize", () => {
  test("min/median/max/p50/p99/mean", () => {
    const xs = Array.from({ length: 100 }, (_, i) => i + 1); // 1..100
    const s = summarize(xs);
    expect(s).toMatchObject({ n: 100, min: 1, max: 100, median: 50.5, p50: 50.5 });
    expect(s.p99).toBeCloseTo(99.01, 10);
    expect(s.mean).toBe(50.5);
  });

  test("empty sample is an error, not NaN", () => {
    expect(() => summarize([])).toThrow("empty");
  });
});

describe("ratio", () => {
  test("formats a/b with precision by size", () => {
    expect(ratio(3, 2)).toBe("1.50x");
    expect(ratio(250, 10)).toBe("25.0x");
    expect(ratio(5000, 10)).toBe("500x");
  });

  test("n/a for missing or zero baselines", () => {
    expect(ratio(1, 0)).toBe("n/a");
    expect(ratio(undefined, 1)).toBe("n/a");
    expect(ratio(1, Number.NaN)).toBe("n/a");
  });
});

describe("formatting", () => {
  test("fmtMs switches units", () => {
    expect(fmtMs(1.234)).toBe("1.23 ms");
    expect(fmtMs(12.34)).toBe("12.3 ms");
    expect(fmtMs(123.4)).toBe("123 ms");
    expect(fmtMs(12_345)).toBe("12.3 s");
  });

  test("fmtBytes uses binary units", () => {
    expect(fmtBytes(512)).toBe("512 B");
    expect(fmtBytes(1536)).toBe("1.5 KiB");
    expect(fmtBytes(1024 ** 3)).toBe("1.0 GiB");
  });

  test("formatTable aligns: first column left, numbers right", () => {
    const t = formatTable(["variant", "median"], [["a", "1 ms"], ["longer", "10 ms"]]);
    expect(t.split("\n")).toEqual([
      "variant  median",
      "-------  ------",
      "a          1 ms",
      "longer    10 ms",
    ]);
  });

  test("formatTable takes explicit alignment", () => {
    expect(formatTable(["s", "what", "r"], [["x", "ab", "1x"], ["yy", "c", "10x"]], ["l", "l", "r"]).split("\n").slice(2)).toEqual([
      "x   ab     1x",
      "yy  c     10x",
    ]);
  });

  test("formatTable pads short rows", () => {
    expect(formatTable(["a", "b"], [["x"]]).split("\n")[2]).toBe("x");
  });

  test("summaryRow adds p99 and the ratio to a baseline", () => {
    const s = summarize([10, 20, 30]);
    const base = summarize([5, 10, 15]);
    expect(summaryRow("x", s, { p99: true, baseline: base })).toEqual(["x", "3", "10.0 ms", "20.0 ms", "30.0 ms", fmtMs(percentile([10, 20, 30], 99)), "2.00x"]);
  });
});

describe("interleave", () => {
  test("round-robin A B A B", () => {
    expect(interleave({ a: 3, b: 3 })).toEqual(["a", "b", "a", "b", "a", "b"]);
  });

  test("variants with fewer runs drop out, total counts are kept", () => {
    const order = interleave({ s: 4, f: 1, c: 2 });
    expect(order).toEqual(["s", "f", "c", "s", "c", "s", "s"]);
    expect(order.filter((k) => k === "s")).toHaveLength(4);
  });

  test("zero counts give nothing", () => {
    expect(interleave({ a: 0 })).toEqual([]);
  });
});

describe("pickSections", () => {
  const all = ["cli", "boot", "exec"] as const;
  test("empty or all means every section, in the canonical order", () => {
    expect(pickSections(all, [])).toEqual(["cli", "boot", "exec"]);
    expect(pickSections(all, ["all"])).toEqual(["cli", "boot", "exec"]);
  });

  test("picks by name, comma or space separated, canonical order", () => {
    expect(pickSections(all, ["exec,cli"])).toEqual(["cli", "exec"]);
    expect(pickSections(all, ["boot", "cli"])).toEqual(["cli", "boot"]);
  });

  test("unknown names are an error naming the known ones", () => {
    expect(() => pickSections(all, ["nope"])).toThrow("unknown bench section(s): nope (known: cli, boot, exec)");
  });
});
