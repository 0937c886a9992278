import { defineCommand } from "./define.ts";
import type { E2BStatus } from "../shared/e2b.ts";
import { daemon, jsonArg, out, streamCall } from "./context.ts";
import { log } from "./log.ts";
import { table } from "./table.ts";

function describe(s: E2BStatus): string {
  const lines = s.listening
    ? [`E2B endpoint on http://${s.listen} (${s.sandboxes} sandboxes, ${s.keys} keys${s.vmm ? `, sandboxes boot with ${s.vmm}` : ""})`, "export its variables with: eval \"$(banger e2b env)\""]
    : [`E2B endpoint off${s.listen ? ` (remembered: ${s.listen})` : ""}: start it with \`banger e2b serve\``];
  if (s.error) lines.push(`last start failed: ${s.error}`);
  return lines.join("\n");
}

/** Shell-quoted for `eval`: a key and URLs have no quotes, but never trust that. */
const sq = (v: string): string => `'${v.replace(/'/g, `'\\''`)}'`;

const serve = defineCommand({
  meta: { name: "serve", description: "Open the E2B endpoint (loopback by default); the daemon listens again after a restart" },
  args: {
    listen: { type: "string", description: "HOST:PORT (default 127.0.0.1:49982; off loopback: a warning)" },
    vmm: { type: "string", description: "VMM new sandboxes boot with (default: the daemon's)" },
    ...jsonArg,
  },
  async run({ args }) {
    const s = await (await daemon()).call("e2bServe", { body: { listen: args.listen, vmm: args.vmm } });
    if (s.warning) log().warn(s.warning);
    out(s, !!args.json, () => describe(s));
  },
});

const stop = defineCommand({
  meta: { name: "stop", description: "Close the E2B endpoint (sandboxes keep running as VMs)" },
  args: { ...jsonArg },
  async run({ args }) {
    const s = await (await daemon()).call("e2bStop", { body: {} });
    out(s, !!args.json, () => describe(s));
  },
});

const status = defineCommand({
  meta: { name: "status", description: "Whether the E2B endpoint listens, where, and how many sandboxes and keys" },
  args: { ...jsonArg },
  async run({ args }) {
    const s = await (await daemon()).call("e2bStatus");
    out(s, !!args.json, () => describe(s));
  },
});

const env = defineCommand({
  meta: { name: "env", description: "Print E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY to export (eval \"$(banger e2b env)\")" },
  args: { key: { type: "string", description: "Use this key (default: banger's env key, made the first time)" }, ...jsonArg },
  async run({ args }) {
    const e = await (await daemon()).call("e2bEnv", { body: { key: args.key } });
    // --json never carries the key: a machine that needs it passes --key, or reads it from `e2b key create`
    out({ apiUrl: e.apiUrl, sandboxUrl: e.sandboxUrl, keyId: e.keyId, created: e.created }, !!args.json, () =>
      [`export E2B_API_URL=${sq(e.apiUrl)}`, `export E2B_SANDBOX_URL=${sq(e.sandboxUrl)}`, `export E2B_API_KEY=${sq(e.apiKey)}`].join("\n"),
    );
  },
});

const keyCreate = defineCommand({
  meta: { name: "create", description: "Make an API key; it is shown this once (banger keeps only its hash)" },
  args: { name: { type: "string", description: "A name to list and remove it by" }, ...jsonArg },
  async run({ args }) {
    const k = await (await daemon()).call("e2bKeyCreate", { body: { name: args.name } });
    out(k, !!args.json, () => `${k.key}\n(key ${k.name}, id ${k.id}: shown once, keep it)`);
  },
});

const keyList = defineCommand({
  meta: { name: "list", description: "List API keys (ids, names and prefixes; never the keys)" },
  args: { ...jsonArg },
  async run({ args }) {
    const { keys } = await (await daemon()).call("e2bKeyList");
    out(keys, !!args.json, () => (keys.length === 0 ? "no e2b keys (make one with `banger e2b key create`)" : table([["ID", "NAME", "PREFIX", "CREATED"], ...keys.map((k) => [k.id, k.name, k.prefix, k.createdAt])])));
  },
});

const keyRm = defineCommand({
  meta: { name: "rm", description: "Remove an API key by id or name: requests carrying it are refused from now on" },
  args: { key: { type: "positional", description: "Key id or name", required: true }, ...jsonArg },
  async run({ args }) {
    const r = await (await daemon()).call("e2bKeyRemove", { params: { key: args.key } });
    out(r, !!args.json, () => `removed e2b key ${r.deleted} (${r.id})`);
  },
});

const templateBuild = defineCommand({
  meta: { name: "build", description: "Build the `base` template's image (e2b-base: Debian, user `user` with sudo, git, python3, inotify-tools, attr)" },
  args: { force: { type: "boolean", description: "Rebuild even if it is up to date" }, ...jsonArg },
  async run({ args }) {
    const { data } = await streamCall("e2bTemplateBuild", { body: { force: !!args.force } }, { json: !!args.json });
    out(data, !!args.json, () => `template base is image ${data.image}`);
  },
});

export default defineCommand({
  meta: { name: "e2b", description: "A local E2B endpoint: agent code written for E2B's SDK runs against banger's VMs" },
  subCommands: {
    serve,
    stop,
    status,
    env,
    key: defineCommand({ meta: { name: "key", description: "API keys of the E2B endpoint" }, subCommands: { create: keyCreate, list: keyList, rm: keyRm } }),
    template: defineCommand({ meta: { name: "template", description: "Templates of the E2B endpoint" }, subCommands: { build: templateBuild } }),
  },
});
