/**
 * Pure helpers for `npm run bench`: percentiles, summaries, ratios, table
 * formatting, interleaved schedules. No I/O here, so
 * test/unit/bench-stats.test.ts covers it.
 */

/** min/median/max plus p50/p99 of a sample, in the sample's unit (ms here). */
export interface Summary {
  n: number;
  min: number;
  median: number;
  max: number;
  p50: number;
  p99: number;
  mean: number;
}

/**
 * Percentile by linear interpolation between closest ranks (numpy's default,
 * R type 7): p0 = min, p100 = max, and p50 equals the usual median.
 */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new Error("percentile of an empty sample");
  if (!(p >= 0 && p <= 100)) throw new Error(`percentile must be within 0..100, not ${p}`);
  const s = [...values].sort((a, b) => a - b);
  const pos = ((s.length - 1) * p) / 100;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return s[lo]! + (s[hi]! - s[lo]!) * (pos - lo);
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function summarize(values: readonly number[]): Summary {
  if (values.length === 0) throw new Error("summary of an empty sample");
  const sorted = [...values].sort((a, b) => a - b);
  return {
    n: values.length,
    min: sorted[0]!,
    median: percentile(sorted, 50),
    max: sorted[sorted.length - 1]!,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    mean: values.reduce((a, b) => a + b, 0) / values.length,
  };
}

/** a/b as "3.42x"; "n/a" when either side is missing or b is zero. */
export function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return "n/a";
  const r = a / b;
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}x`;
}

/** Milliseconds for a table cell: 3 significant-ish digits, seconds past 10 s. */
export function fmtMs(ms: number): string {
  if (!Number.isFinite(ms)) return "-";
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

/** Bytes as B / KiB / MiB / GiB with one decimal. */
export function fmtBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

/**
 * A plain-text table, two spaces between columns. By default the first
 * column is left-aligned and the others right-aligned (they hold numbers);
 * `align` ("l"/"r" per column) overrides.
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[], align?: readonly ("l" | "r")[]): string {
  const width = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? "").length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, c) => ((align?.[c] ?? (c === 0 ? "l" : "r")) === "l" ? cell.padEnd(width[c]!) : cell.padStart(width[c]!)))
      .join("  ")
      .trimEnd();
  const rule = width.map((w) => "-".repeat(w)).join("  ");
  return [line(header), rule, ...rows.map((r) => line(header.map((_, c) => r[c] ?? "")))].join("\n");
}

/** One table row for a measured variant: name, n, min, median, max (and p99 when asked). */
export function summaryRow(name: string, s: Summary, opts: { p99?: boolean; baseline?: Summary } = {}): string[] {
  const row = [name, String(s.n), fmtMs(s.min), fmtMs(s.median), fmtMs(s.max)];
  if (opts.p99) row.push(fmtMs(s.p99));
  if (opts.baseline) row.push(ratio(s.median, opts.baseline.median));
  return row;
}

/**
 * The order to run variants in: round-robin (A B A B …), so slow drift on a
 * shared machine (another engineer's test run) lands on every variant alike.
 * Variants with fewer runs drop out when they are done.
 */
export function interleave<K extends string>(counts: Readonly<Record<K, number>>): K[] {
  const left = { ...counts } as Record<K, number>;
  const keys = Object.keys(left) as K[];
  const out: K[] = [];
  for (;;) {
    let any = false;
    for (const k of keys) {
      if (left[k] > 0) {
        out.push(k);
        left[k]--;
        any = true;
      }
    }
    if (!any) return out;
  }
}

/** Parse the sections argument list: empty means all; unknown names are an error. */
export function pickSections<S extends string>(all: readonly S[], argv: readonly string[]): S[] {
  const asked = argv.flatMap((a) => a.split(",")).map((a) => a.trim()).filter(Boolean);
  if (asked.length === 0 || asked.includes("all")) return [...all];
  const bad = asked.filter((a) => !(all as readonly string[]).includes(a));
  if (bad.length) throw new Error(`unknown bench section(s): ${bad.join(", ")} (known: ${all.join(", ")})`);
  return all.filter((s) => asked.includes(s));
}
