export * from "./engine.ts";
export * from "./scripts.ts";
export * from "../shared/quote.ts";
export type { SessionRepo } from "../shared/session-repo.ts";
