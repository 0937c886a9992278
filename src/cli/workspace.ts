import { defineCommand } from "./define.ts";
import { resolve } from "node:path";
import type { Workspace } from "../shared/api.ts";
import type { BodyOf } from "../shared/routes.ts";
import { daemon, jsonArg, out, streamCall, usage } from "./context.ts";
import { outStream } from "../host/stdio.ts";

const vmArg = { vm: { type: "positional", required: true, description: "VM name" } } as const;
const guestPathArg = { "guest-path": { type: "string", description: "Where the repo lives in the guest (default /root/repo)" } } as const;

/** Prepare through the daemon with progress on stderr; shared with `vm run --workspace`. */
export async function prepareWorkspace(vm: string, body: BodyOf<"workspacePrepare">, json: boolean): Promise<Workspace> {
  const ev = await streamCall("workspacePrepare", { params: { vm }, query: { stream: true }, body }, { json });
  return ev.data;
}

function _prepareCommand(name: string, description: string) {
  return defineCommand({
    meta: { name, description },
    args: {
      ...vmArg,
      path: { type: "positional", required: false, description: "Host repo (same as --source; default: current directory)" },
      source: { type: "string", description: "Host repo (default: current directory)" },
      ...guestPathArg,
      "read-only": { type: "boolean", description: "Make the guest copy read-only (chmod -R a-w)" },
      force: { type: "boolean", description: "Replace the guest copy even when it holds commits or changed files the host does not have (refused otherwise; `banger workspace export` brings them back)" },
      ...jsonArg,
    },
    async run({ args }) {
      if (args.source && args.path && resolve(args.source) !== resolve(args.path)) usage("give the host repo once: either PATH or --source");
      const sourcePath = resolve(args.source || args.path || ".");
      const ws = await prepareWorkspace(args.vm, { sourcePath, guestPath: args["guest-path"] || undefined, readOnly: args["read-only"] ? true : undefined, force: args.force ? true : undefined }, !!args.json);
      const mib = (ws.bytes / 1048576).toFixed(1);
      out(ws, !!args.json, () => `prepared ${ws.sourcePath} in ${ws.vm}:${ws.guestPath} (${ws.files} files, ${mib} MiB${ws.readOnly ? ", read-only" : ""})`);
    },
  });
}

const DESCRIPTION = "Copy a git repo (tracked + untracked, not ignored, with .git minus credentials) into a running VM";
const prepare = _prepareCommand("prepare", DESCRIPTION);
const push = _prepareCommand("push", `${DESCRIPTION} (alias of prepare)`);

const diff = defineCommand({
  meta: { name: "diff", description: "Print the guest repo's changes vs its HEAD (new files included) as a patch for `git apply` (--json: {vm, patch}, the patch as UTF-8 text)" },
  args: { ...vmArg, ...guestPathArg, ...jsonArg },
  async run({ args }) {
    const query = { guestPath: args["guest-path"] || undefined };
    if (args.json) {
      const r = await (await daemon()).call("workspaceDiff", { params: { vm: args.vm }, query: { ...query, format: "json" } });
      out({ vm: args.vm, ...r }, true, () => "");
      return;
    }
    // Raw bytes: a patch is not necessarily UTF-8, and `git apply` wants it exact.
    await Bun.write(Bun.stdout, await (await daemon()).raw("workspaceDiff", { params: { vm: args.vm }, query }));
  },
});

const exportCmd = defineCommand({
  meta: { name: "export", description: "Bring the guest's new commits and uncommitted work back: as a patch series for `git am` (--patch FILE, - for stdout) or fetched into refs/banger/VM/BRANCH of the source repo (--fetch)" },
  args: {
    ...vmArg,
    ...guestPathArg,
    patch: { type: "string", description: "Write a `git format-patch --binary` series to FILE (- for stdout); the superproject only: a submodule's change shows as its new commit id (--fetch brings submodules' work)" },
    fetch: { type: "boolean", description: "git fetch the guest branch into refs/banger/VM/BRANCH of --source, and each submodule's into its own repo (working tree, index and branches untouched)" },
    source: { type: "string", description: "Host repo to fetch into (default: current directory)" },
    ...jsonArg,
  },
  async run({ args }) {
    if (!!args.patch === !!args.fetch) usage("export needs exactly one of --patch FILE or --fetch");
    const guestPath = args["guest-path"] || undefined;
    if (args.fetch) {
      const r = await (await daemon()).call("workspaceExport", { params: { vm: args.vm }, body: { format: "fetch", guestPath, sourcePath: resolve(args.source || ".") } });
      out(r, !!args.json, () => (r.refs.length ? r.refs.map((x) => `${x.repo ? `${x.repo}: ` : ""}${x.ref} ${x.commit}`).join("\n") : `nothing new in ${r.vm}:${r.guestPath} since it was prepared`));
      return;
    }
    const bytes = await (await daemon()).raw("workspaceExport", { params: { vm: args.vm }, body: { format: "patch", guestPath } });
    const commits = (new TextDecoder().decode(bytes).match(/^From [0-9a-f]{40} /gm) ?? []).length;
    if (args.patch === "-") {
      await Bun.write(Bun.stdout, bytes);
      if (args.json) outStream(2).write(JSON.stringify({ vm: args.vm, commits, bytes: bytes.length }) + "\n");
      return;
    }
    const file = resolve(args.patch!);
    if (bytes.length > 0) {
      // temp + rename next to the target: a reader never sees half a patch
      const { createFS } = await import("../host/fs.ts");
      await createFS().writeAtomic(file, bytes, 0o644);
    }
    out({ vm: args.vm, patch: bytes.length ? file : null, commits, bytes: bytes.length }, !!args.json, () =>
      bytes.length ? `wrote ${commits} commit${commits === 1 ? "" : "s"} to ${file} (git am ${file})` : `nothing new in ${args.vm} since it was prepared; ${file} not written`,
    );
  },
});

export default defineCommand({
  meta: { name: "workspace", description: "Your git repo in a VM: prepare it there, get changes back as a patch or a git fetch" },
  subCommands: { prepare, push, diff, export: exportCmd },
});
