export * from "./engine.ts";
export * from "./scripts.ts";
export * from "./quote.ts";
export type { SessionRepo } from "./types.ts";
