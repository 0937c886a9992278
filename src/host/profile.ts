import { config } from "./config.ts";

/**
 * BANGER_PROFILE=1: where a command's milliseconds go. mark() records the
 * time since the process started (performance.now()); at exit the marks go
 * to stderr as one JSON line `{"profile":[[name, ms], …]}` (bench's P1
 * profile reads it). Off, a mark is one property read.
 */
const _on = config.profile;
let _marks: [string, number][] | null = null;

export function mark(name: string): void {
  if (!_on) return;
  if (!_marks) {
    _marks = [];
    const marks = _marks;
    process.on("exit", () => {
      marks.push(["exit", performance.now()]);
      console.error(JSON.stringify({ profile: marks.map(([n, t]) => [n, Math.round(t * 1000) / 1000]) }));
    });
  }
  _marks.push([name, performance.now()]);
}
