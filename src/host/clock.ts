import type { Clock } from "./types.ts";

/** Milliseconds since the epoch: for code without a Host at hand (the CLI's deadlines and progress timer). */
export function nowMs(): number {
  return Date.now();
}

const MAX_TIMER_MS = 2 ** 31 - 1;

export function createClock(): Clock {
  return {
    now: () => new Date(nowMs()),
    sleep: (ms: number) => new Promise((r) => setTimeout(r, ms)),
    timer(ms, fn) {
      // setTimeout fires at once for delays past 2^31-1 ms (~24.8 days): wake at that cap and let the caller re-arm
      const t = setTimeout(fn, Math.min(Math.max(0, ms), MAX_TIMER_MS));
      return () => clearTimeout(t);
    },
  };
}
