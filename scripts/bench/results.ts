/**
 * The bench's results as data: one row per headline figure (min/median/p99
 * over repeated runs, the baseline measured in the same run, the ratio, the
 * issue's goal and whether it was met), written to bench/results.json and a
 * Markdown table. Pure: machine facts come in as a value, so
 * test/unit/bench-results.test.ts covers it.
 */
import { fmtBytes, fmtMs, type Summary } from "./stats.ts";

/** What the numbers were measured on. */
export interface Machine {
  cores: number;
  memoryBytes: number;
  kernel: string;
  kvmUsable: boolean;
  kvmReason: string;
  cpuModel: string;
  /** 1/5/15-minute load averages when the run ended: how busy the shared machine was. */
  loadAvg: number[];
}

/** A goal from issue 8: on the ratio to the baseline or on the absolute median. */
export interface Goal {
  on: "ratio" | "value";
  max?: number;
  min?: number;
  /** How the issue states it, e.g. "≤ 1.3× hello-world". */
  text: string;
}

export type Unit = "ms" | "bytes";

export interface ResultRow {
  /** Issue 8's figure id: P1 … P7. */
  id: string;
  section: string;
  measure: string;
  unit: Unit;
  n: number;
  min: number;
  median: number;
  p99: number;
  baseline?: { name: string; median: number };
  /** median / baseline median. */
  ratio?: number;
  goal?: Goal;
  /** null: no goal, or not measurable (no baseline). */
  met: boolean | null;
  note?: string;
  /** "not run": a placeholder row that holds no numbers. */
  status: "measured" | "not run";
  /** ISO date of the run that measured it (rows of sections not re-run are carried over). */
  at: string;
  sha: string;
}

export interface Results {
  machine: Machine;
  date: string;
  sha: string;
  mode: "full" | "quick";
  rows: ResultRow[];
}

/** The figures issue 8 asks for, so a figure nobody measured still shows up as "not run". */
export const EXPECTED: readonly { id: string; what: string }[] = [
  { id: "P1", what: "CLI: vm list --json vs compiled Bun hello-world; auto-start to first answer" },
  { id: "P2", what: "exec: vm exec -- true vs fresh ssh and ControlMaster" },
  { id: "P3", what: "boot: vm run --rm -- true vs raw qemu to ssh ready" },
  { id: "P4", what: "workspace: prepare vs tar|ssh and git bundle; re-prepare" },
  { id: "P5", what: "recovery: re-adopt live VMs after daemon kill -9; daemon RSS" },
  { id: "P6", what: "sessions: send→reply round trip vs ssh per message" },
  { id: "P7", what: "parallel: 10 parallel vm run vs one" },
];

/** Is the goal met? null when there is no goal or the figure it needs is missing. */
export function goalMet(goal: Goal | undefined, median: number, ratio: number | undefined): boolean | null {
  if (!goal) return null;
  const v = goal.on === "ratio" ? ratio : median;
  if (v === undefined || !Number.isFinite(v)) return null;
  if (goal.max !== undefined && v > goal.max) return false;
  if (goal.min !== undefined && v < goal.min) return false;
  return true;
}

export interface RowInput {
  id: string;
  section: string;
  measure: string;
  unit?: Unit;
  stats: Summary;
  baseline?: { name: string; stats: Summary };
  goal?: Goal;
  note?: string;
}

/** A measured row: ratio of medians to the baseline, goal checked. */
export function makeRow(r: RowInput, at: string, sha: string): ResultRow {
  const ratio = r.baseline && r.baseline.stats.median > 0 ? r.stats.median / r.baseline.stats.median : undefined;
  return {
    id: r.id,
    section: r.section,
    measure: r.measure,
    unit: r.unit ?? "ms",
    n: r.stats.n,
    min: r.stats.min,
    median: r.stats.median,
    p99: r.stats.p99,
    baseline: r.baseline ? { name: r.baseline.name, median: r.baseline.stats.median } : undefined,
    ratio,
    goal: r.goal,
    met: goalMet(r.goal, r.stats.median, ratio),
    note: r.note,
    status: "measured",
    at,
    sha,
  };
}

/**
 * This run's rows, plus the previous file's rows for sections this run did
 * not touch (kept with their own date and sha), plus a "not run" row for
 * every expected figure that has none. Ordered by figure id, stable within one.
 */
export function mergeRows(current: readonly ResultRow[], ranSections: readonly string[], previous: readonly ResultRow[], at: string, sha: string): ResultRow[] {
  const ran = new Set(ranSections);
  const kept = previous.filter((r) => r.status === "measured" && !ran.has(r.section));
  const rows = [...current, ...kept];
  const have = new Set(rows.map((r) => r.id));
  for (const e of EXPECTED) {
    if (have.has(e.id)) continue;
    rows.push({
      id: e.id, section: "-", measure: `${e.what}: not run`, unit: "ms", n: 0, min: NaN, median: NaN, p99: NaN,
      met: null, status: "not run", at, sha,
    });
  }
  const order = (id: string) => {
    const i = EXPECTED.findIndex((e) => e.id === id);
    return i < 0 ? EXPECTED.length : i;
  };
  return rows.map((r, i) => ({ r, i })).sort((a, b) => order(a.r.id) - order(b.r.id) || a.i - b.i).map((x) => x.r);
}

/** JSON with NaN (placeholder rows) as null, so any JSON reader can load it. */
export function toJson(res: Results): string {
  return JSON.stringify(res, (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n";
}

/** Parse a previous results.json; rows only (anything unreadable counts as no previous run). */
export function previousRows(text: string | null): ResultRow[] {
  if (!text) return [];
  try {
    const rows = (JSON.parse(text) as { rows?: unknown }).rows;
    if (!Array.isArray(rows)) return [];
    return rows
      .filter((r): r is ResultRow => !!r && typeof r === "object" && typeof (r as ResultRow).id === "string" && typeof (r as ResultRow).section === "string")
      .map((r) => ({ ...r, min: r.min ?? NaN, median: r.median ?? NaN, p99: r.p99 ?? NaN }));
  } catch {
    return [];
  }
}

function fmtValue(v: number, unit: Unit): string {
  if (!Number.isFinite(v)) return "-";
  return unit === "bytes" ? fmtBytes(v) : fmtMs(v);
}

export function fmtRatio(r: number | undefined): string {
  if (r === undefined || !Number.isFinite(r)) return "-";
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`;
}

function metCell(r: ResultRow): string {
  if (r.status === "not run") return "not run";
  if (r.met === null) return r.goal ? "n/a" : "-";
  return r.met ? "met" : "**missed**";
}

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

export function machineLine(m: Machine): string {
  const load = m.loadAvg?.length ? `; load average ${m.loadAvg.map((x) => x.toFixed(1)).join(" / ")} at the end of the run` : "";
  return `${m.cores} cores (${m.cpuModel}), ${fmtBytes(m.memoryBytes)} RAM, Linux ${m.kernel}, KVM ${m.kvmUsable ? "usable" : `not usable (${m.kvmReason})`}${load}`;
}

/** The Markdown page the README links: machine, then one table row per figure, then notes. */
export function toMarkdown(res: Results): string {
  const lines = [
    "# banger benchmark results",
    "",
    `Generated by \`npm run bench${res.mode === "quick" ? " -- --quick" : ""}\` (scripts/bench/main.ts); do not edit by hand.`,
    "",
    `- machine: ${machineLine(res.machine)}`,
    `- run: ${res.date}, git ${res.sha}${res.mode === "quick" ? ", quick mode (few iterations, test driver only)" : ""}`,
    "- every ratio is a median over the median of a baseline measured in the same run (interleaved where possible): the machine is shared and noisy, so absolute times move between runs and ratios much less.",
    "",
    "| id | measure | n | min | median | p99 | baseline (median) | ratio | goal | met |",
    "|---|---|--:|--:|--:|--:|---|--:|---|---|",
  ];
  for (const r of res.rows) {
    const base = r.baseline ? `${r.baseline.name} (${fmtValue(r.baseline.median, r.unit)})` : "-";
    const carried = r.status === "measured" && r.at !== res.date ? ` (from the run of ${r.at}, git ${r.sha})` : "";
    lines.push(`| ${[
      r.id, cell(r.measure + carried), r.status === "not run" ? "-" : String(r.n), fmtValue(r.min, r.unit), fmtValue(r.median, r.unit), fmtValue(r.p99, r.unit),
      cell(base), fmtRatio(r.ratio), cell(r.goal?.text ?? "-"), metCell(r),
    ].join(" | ")} |`);
  }
  const notes = res.rows.filter((r) => r.note);
  if (notes.length) {
    lines.push("", "Notes:", "");
    for (const r of notes) lines.push(`- ${r.id} ${cell(r.measure)}: ${cell(r.note!)}`);
  }
  return lines.join("\n") + "\n";
}
