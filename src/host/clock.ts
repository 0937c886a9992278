import type { Clock } from "./types.ts";

/** Milliseconds since the epoch: for code without a Host at hand (the CLI's deadlines and progress timer). */
export function nowMs(): number {
  return Date.now();
}

export function createClock(): Clock {
  return {
    now: () => new Date(nowMs()),
    sleep: (ms: number) => new Promise((r) => setTimeout(r, ms)),
  };
}
