import { defineCommand } from "./define.ts";
import type { PortsView } from "../shared/api.ts";
import { formatPort } from "../shared/ports.ts";
import { daemon, jsonArg, out } from "./context.ts";

const vmArg = { vm: { type: "positional", required: true, description: "VM name" } } as const;

function table(v: PortsView): string {
  if (v.ports.length === 0) return `${v.vm} publishes no ports (add one with \`banger vm port add ${v.vm} 8080:80\`)`;
  const rows = [["PORT", "REACH"], ...v.ports.map((p) => [formatPort(p), p.reach.join(", ") || (v.alive ? "-" : "- (vm not running)")])];
  const w = Math.max(...rows.map((r) => r[0]!.length));
  return rows.map((r) => `${r[0]!.padEnd(w)}  ${r[1]}`).join("\n");
}

const add = defineCommand({
  meta: { name: "add", description: "Publish a guest port: banger vm port add VM [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp] (forwarded now if it runs, else at its next start)" },
  args: { ...vmArg, spec: { type: "positional", required: true, description: "[HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp]; HOSTPORT 0: any free one" }, ...jsonArg },
  async run({ args }) {
    const v = await (await daemon()).call("portAdd", { params: { vm: args.vm }, body: { spec: args.spec } });
    out(v, !!args.json, () => {
      const p = v.added!;
      return `${v.vm}: published ${formatPort(p)}${p.reach.length ? ` (${p.reach.join(", ")})` : v.alive ? "" : " (forwarded when it starts)"}`;
    });
  },
});

const rm = defineCommand({
  meta: { name: "rm", description: "Unpublish: banger vm port rm VM GUESTPORT|SPEC (a guest port, e.g. 80 or 53/udp, removes every forward to it)" },
  args: { ...vmArg, spec: { type: "positional", required: true, description: "A guest port, or the spec as published" }, ...jsonArg },
  async run({ args }) {
    const v = await (await daemon()).call("portRemove", { params: { vm: args.vm }, query: { spec: args.spec } });
    out(v, !!args.json, () => (v.removed ?? []).map((p) => `${v.vm}: removed ${formatPort(p)}`).join("\n"));
  },
});

const ls = defineCommand({
  meta: { name: "ls", description: "List a VM's published ports and where the host reaches them" },
  args: { ...vmArg, ...jsonArg },
  async run({ args }) {
    const v = await (await daemon()).call("portList", { params: { vm: args.vm } });
    out(v, !!args.json, () => table(v));
  },
});

export default defineCommand({
  meta: { name: "port", description: "Published ports of a VM: add, rm, ls" },
  subCommands: { add, rm, ls, list: ls },
});
