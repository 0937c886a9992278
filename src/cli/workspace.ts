import { defineCommand } from "citty";
import { resolve } from "node:path";
import { BangerError, ERROR_CODES, type ErrorCode } from "../core/errors.ts";
import type { Workspace } from "../workspace/engine.ts";
import { daemon, jsonArg, out } from "./context.ts";

const enc = encodeURIComponent;
const vmArg = { vm: { type: "positional", required: true, description: "VM name" } } as const;
const guestPathArg = { guestPath: { type: "string", description: "Where the repo lives in the guest (default /root/repo)" } } as const;
const base = (vm: string) => `/v1/vms/${enc(vm)}/workspace`;

const push = defineCommand({
  meta: { name: "push", description: "Copy a git repo (tracked + untracked, not ignored, with .git minus credentials) into a running VM" },
  args: {
    ...vmArg,
    path: { type: "positional", required: false, description: "Host repo (default: current directory)" },
    ...guestPathArg,
    readOnly: { type: "boolean", description: "Make the guest copy read-only (chmod -R a-w)" },
    ...jsonArg,
  },
  async run({ args }) {
    const sourcePath = resolve(args.path || ".");
    const ws = await (await daemon()).call<Workspace>("POST", base(args.vm), {
      sourcePath,
      guestPath: args.guestPath || undefined,
      readOnly: args.readOnly ? true : undefined,
    });
    out(ws, !!args.json, () => `pushed ${ws.sourcePath} to ${ws.vm}:${ws.guestPath} (${ws.files} files${ws.readOnly ? ", read-only" : ""})`);
  },
});

const diff = defineCommand({
  meta: { name: "diff", description: "Print the guest repo's changes vs its HEAD (new files included) as a patch for `git apply`" },
  args: { ...vmArg, ...guestPathArg },
  async run({ args }) {
    const q = args.guestPath ? `?guestPath=${enc(args.guestPath)}` : "";
    const res = await (await daemon()).fetch("GET", `${base(args.vm)}/diff${q}`);
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (!res.ok) {
      let err: { code?: string; message?: string } = {};
      try {
        err = (JSON.parse(new TextDecoder().decode(bytes)) as { error?: typeof err }).error ?? {};
      } catch {}
      const code = (err.code && err.code in ERROR_CODES ? err.code : res.status >= 500 ? "E_DAEMON" : "E_BAD_REQUEST") as ErrorCode;
      throw new BangerError(code, err.message ?? `daemon answered ${res.status}`);
    }
    // Raw bytes: a patch is not necessarily UTF-8, and `git apply` wants it exact.
    await Bun.write(Bun.stdout, bytes);
  },
});

export default defineCommand({
  meta: { name: "workspace", description: "Your git repo in a VM: push it in, get changes back as a patch" },
  subCommands: { push, diff },
});
