// Kept tiny: every command pays for what loads before it runs (see bench/results.md, P1).
import { mark } from "../host/profile.ts";

mark("entry");
const { run } = await import("./main.ts");
mark("cli loaded");
await run(process.argv.slice(2));
export {};
