import { defineCommand } from "./define.ts";
import { daemon, jsonArg, out } from "./context.ts";

const list = defineCommand({
  meta: { name: "list", description: "List loaded plugins (built-ins first)" },
  args: { ...jsonArg },
  async run({ args }) {
    const { plugins } = await (await daemon()).call("pluginList");
    out(plugins, !!args.json, () =>
      plugins.map((p) => `${p.name.padEnd(14)} ${p.source === "builtin" ? "builtin" : p.source}\n  hooks: ${[...new Set(p.hooks)].join(", ") || "-"}${p.drivers.length ? `; drivers: ${p.drivers.join(", ")}` : ""}${p.storage.length ? `; storage: ${p.storage.join(", ")}` : ""}${p.nets.length ? `; net: ${p.nets.join(", ")}` : ""}`).join("\n"),
    );
  },
});

export default defineCommand({
  meta: { name: "plugin", description: "Inspect plugins" },
  subCommands: { list },
});
