// Kept tiny: every command pays for what loads before it runs (see bench/results.md, P1).
import { mark } from "../host/profile.ts";
import { earlyField, sendEarly } from "../client/early.ts";
import { earlyRead } from "./early-reads.ts";
import { writeJson } from "./json-out.ts";

mark("entry");
const argv = process.argv.slice(2);
const read = earlyRead(argv);
if (read) {
  // a plain list: ask the daemon now, and load the CLI while it answers (with --json, wait for it alone)
  const json = argv.includes("--json");
  sendEarly(read.path, json);
  mark("early read sent");
  if (json) {
    // an answer that needs nothing more (our socket, this build's daemon, 200): print it, and load no CLI at all
    const value = await earlyField(read.key);
    if (value !== undefined) {
      mark("answered early");
      writeJson(value);
      mark("rendered");
      // written synchronously, nothing else to do: exit now rather than wait for the runtime to wind down (~0.1× hello-world, P1)
      process.exit(0);
    }
  }
}
const { run } = await import("./main.ts");
mark("cli loaded");
await run(argv);
export {};
