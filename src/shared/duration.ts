// Durations as people type them (`20s`, `5m`, `1h30m`, `2d`) and as the CLI shows them.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** The longest lifetime accepted: far beyond any sandbox, short enough that absolute times stay sane. */
export const MAX_DURATION_MS = 366 * 86_400_000;

/**
 * "500ms", "1.5s", "90s", "5m", "1h30m", "2d", or a bare number of seconds (Go's and Docker's form, plus days) →
 * milliseconds; null when it is none of those or is 0. Every duration option reads this one form.
 */
export function parseDuration(text: string): number | null {
  const s = text.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return _positive(Math.round(Number(s) * 1000));
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(s)) return null;
  let ms = 0;
  for (const [, n, unit] of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return _positive(Math.round(ms));
}

function _positive(ms: number): number | null {
  return Number.isSafeInteger(ms) && ms > 0 ? ms : null;
}

/** 93_000 → "1m33s"; under a second → "0s"; negative → "0s". */
export function formatDuration(ms: number): string {
  let rest = Math.max(0, Math.floor(ms / 1000));
  if (rest === 0) return "0s";
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  // two units say enough ("1d2h", not "1d2h3m4s")
  return parts.slice(0, 2).join("");
}
