import { fdIsTTY } from "./stdio.ts";

// Colour decisions are made when citty loads, so settle them before importing it.
if (!fdIsTTY(1)) process.env.NO_COLOR ??= "1";
const { run } = await import("./main.ts");
await run(process.argv.slice(2));
export {};
