// Kept tiny: every command pays for what loads before it runs (see bench/results.md, P1).
import { mark } from "../host/profile.ts";
import { earlyRead } from "./early-reads.ts";

mark("entry");
const argv = process.argv.slice(2);
const read = earlyRead(argv);
if (read) {
  // a plain list: ask the daemon now, and load the CLI while it answers
  (await import("../client/early.ts")).sendEarly(read);
  mark("early read sent");
}
const { run } = await import("./main.ts");
mark("cli loaded");
await run(argv);
export {};
