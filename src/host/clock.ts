import type { Clock } from "./types.ts";

export function createClock(): Clock {
  return {
    now: () => new Date(),
    sleep: (ms: number) => new Promise((r) => setTimeout(r, ms)),
  };
}
