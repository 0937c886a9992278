import { table } from "./table.ts";
import { defineCommand } from "./define.ts";
import type { SnapshotRecord } from "../shared/model.ts";
import { daemon, jsonArg, out } from "./context.ts";

const refArg = { snapshot: { type: "positional", description: "Snapshot: VM@SNAP", required: true } } as const;

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

export function describeSnapshot(s: SnapshotRecord): string {
  return [
    `name:      ${s.vmName}@${s.name}`,
    `id:        ${s.id}`,
    `of:        ${s.memory ? "memory, device state and disks (the VM ran)" : "disks (the VM was stopped)"}`,
    `shape:     ${s.spec.cpus} cpu, ${s.spec.memoryMiB} MiB, image ${s.spec.image}, ${s.spec.driver}, storage ${s.spec.storage}`,
    `size:      ${mib(s.sizeBytes)} (apparent)`,
    `frozen:    ${s.memory ? `${s.freezeMs} ms` : "-"}`,
    `created:   ${s.createdAt}`,
    `dir:       ${s.dir}`,
  ].join("\n");
}

const list = defineCommand({
  meta: { name: "list", description: "List snapshots (all, or of one VM with --vm)" },
  args: { vm: { type: "string", description: "Only this VM's" }, ...jsonArg },
  async run({ args }) {
    const { snapshots } = await (await daemon()).call("snapshotList", { query: { vm: args.vm } });
    out(snapshots, !!args.json, () =>
      snapshots.length === 0
        ? "no snapshots (make one with `banger vm snapshot VM`)"
        : table([["SNAPSHOT", "HOLDS", "SIZE", "CREATED"], ...snapshots.map((s) => [`${s.vmName}@${s.name}`, s.memory ? "memory+disks" : "disks", mib(s.sizeBytes), s.createdAt])]),
    );
  },
});

const show = defineCommand({
  meta: { name: "show", description: "Show one snapshot: banger snapshot show VM@SNAP" },
  args: { ...refArg, ...jsonArg },
  async run({ args }) {
    const s = await (await daemon()).call("snapshotShow", { params: { snap: args.snapshot } });
    out(s, !!args.json, () => describeSnapshot(s));
  },
});

const rm = defineCommand({
  meta: { name: "rm", description: "Remove a snapshot and its files: banger snapshot rm VM@SNAP" },
  args: { ...refArg, ...jsonArg },
  async run({ args }) {
    const r = await (await daemon()).call("snapshotRemove", { params: { snap: args.snapshot } });
    out(r, !!args.json, () => `removed ${r.deleted}`);
  },
});

export default defineCommand({
  meta: { name: "snapshot", description: "List, show and remove VM snapshots (make them with `banger vm snapshot`)" },
  subCommands: { list, show, rm },
});
