import { environ } from "./environ.ts";

/**
 * BANGER_PROFILE=1: where a command's milliseconds go. mark() records the
 * time since the process started (performance.now()); at exit the marks go
 * to stderr as one JSON line `{"profile":[[name, ms], …], "cpuMs"}` (bench's
 * P1 profile reads it), with the CPU time of all the process's threads so far
 * (the runtime starts some: fetch's HTTP client, the file-system pool).
 * Off, a mark is one property read.
 */
// BANGER_PROFILE (listed in ./config.ts), read without loading config.ts's getters: entry.ts loads this first (P1)
const _on = !!environ().BANGER_PROFILE;
let _marks: [string, number][] | null = null;

export function mark(name: string): void {
  if (!_on) return;
  if (!_marks) {
    _marks = [];
    const marks = _marks;
    process.on("exit", () => {
      marks.push(["exit", performance.now()]);
      // nothing here may load a module (node:fs would add ~1 ms to the exit it measures)
      const cpu = process.cpuUsage();
      const ms = (t: number) => Math.round(t * 1000) / 1000;
      console.error(JSON.stringify({ profile: marks.map(([n, t]) => [n, ms(t)]), cpuMs: ms((cpu.user + cpu.system) / 1000) }));
    });
  }
  _marks.push([name, performance.now()]);
}
