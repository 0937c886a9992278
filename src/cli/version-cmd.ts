import { defineCommand } from "./define.ts";
import { FULL_VERSION } from "../version.ts";
import { jsonArg, out } from "./context.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version of this build" },
  args: { ...jsonArg },
  run({ args }) {
    out({ version: FULL_VERSION }, !!args.json, () => `banger ${FULL_VERSION}`);
  },
});
