import { defineCommand } from "./define.ts";
import { BangerError } from "../shared/errors.ts";
import type { VMView } from "../shared/api.ts";
import { daemon, fail, intArg, jsonArg, out, passthrough, sizeArg, streamCall, usage } from "./context.ts";

const nameArg = { name: { type: "positional", description: "VM name", required: true } } as const;

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n");
}

function describe(vm: VMView): string {
  const r = vm.runtime;
  const lines = [
    `name:      ${vm.name}`,
    `id:        ${vm.id}`,
    `state:     ${r.state}${vm.alive ? " (alive, pid " + vm.pid + ")" : ""}`,
    `image:     ${vm.spec.image}`,
    `driver:    ${vm.spec.driver}`,
    `cpus:      ${vm.spec.cpus}`,
    `memory:    ${vm.spec.memoryMiB} MiB`,
    `net:       ${vm.spec.net ?? "user"}${r.guestIP ? ` (${r.guestIP}, ${r.dnsName})` : ""}`,
    `storage:   ${vm.spec.storage}`,
    `ssh:       ${r.sshPort ? `${r.sshHost}:${r.sshPort}` : "-"}`,
    `dir:       ${r.vmDir}`,
  ];
  if (r.lastError) lines.push(`lastError: ${r.lastError}`);
  return lines.join("\n");
}

const createArgs = {
  image: { type: "string", description: "Image name (default: default)" },
  cpus: { type: "string", description: "vCPUs (default 1)" },
  memory: { type: "string", description: "Memory, e.g. 512M or 1G (default 256M)" },
  disk: { type: "string", description: "System disk size, e.g. 2G (default: the image's size)" },
  "work-disk": { type: "string", description: "Extra work disk mounted at /work, e.g. 1G" },
  vmm: { type: "string", description: "VMM: firecracker or qemu (default: firecracker when it and /dev/kvm are usable, else qemu)" },
  driver: { type: "string", description: "Same as --vmm (older name)" },
  net: { type: "string", description: "Network provider: user (QEMU's default; loopback SSH forward), tap (bridge, guest IP, <name>.vm; needs root) or a plugin's (`banger plugin list`)" },
  storage: { type: "string", description: "Storage provider: dm (dm-snapshot; the default where device-mapper works), copy (sparse/reflink copy) or a plugin's (`banger plugin list`)" },
} as const;

function createBody(name: string, a: Record<string, unknown>) {
  return {
    name,
    image: a.image as string | undefined,
    cpus: intArg(a.cpus, "--cpus"),
    memoryMiB: sizeArg(a.memory, "--memory"),
    diskMiB: sizeArg(a.disk, "--disk"),
    workDiskMiB: sizeArg(a["work-disk"], "--work-disk"),
    driver: (a.vmm ?? a.driver) as string | undefined,
    // the daemon checks both against the providers its plugins registered
    net: a.net as string | undefined,
    storage: a.storage as string | undefined,
  };
}

async function getVM(name: string): Promise<VMView | null> {
  const c = await daemon();
  try {
    return await c.call("vmShow", { params: { vm: name } });
  } catch (e) {
    if (e instanceof BangerError && e.code === "E_VM_NOT_FOUND") return null;
    throw e;
  }
}

/** Run argv in the VM through the daemon's pooled SSH connection; returns the exit code. */
async function execIn(name: string, argv: string[], json: boolean, stdin?: boolean): Promise<number> {
  if (argv.length === 0) usage("a command is required after --, e.g. `banger vm exec NAME -- uname -a`");
  const body: { argv: string[]; stdin?: string } = { argv };
  if (stdin) body.stdin = Buffer.from(await Bun.stdin.arrayBuffer()).toString("base64");
  const ev = await streamCall("vmExec", { params: { vm: name }, body }, { json: false });
  const code = ev.code;
  if (json) process.stderr.write(JSON.stringify({ exitCode: code }) + "\n");
  return code;
}

const list = defineCommand({
  meta: { name: "list", description: "List VMs" },
  args: { ...jsonArg },
  async run({ args }) {
    const { vms } = await (await daemon()).call("vmList");
    out(vms, !!args.json, () =>
      vms.length === 0
        ? "no vms (create one with `banger vm run --name NAME -- CMD`)"
        : table([["NAME", "STATE", "ALIVE", "IMAGE", "SSH"], ...vms.map((v) => [v.name, v.runtime.state, v.alive ? "yes" : "no", v.spec.image, v.runtime.sshPort ? `${v.runtime.sshHost}:${v.runtime.sshPort}` : "-"])]),
    );
  },
});

const show = defineCommand({
  meta: { name: "show", description: "Show one VM" },
  args: { ...nameArg, ...jsonArg },
  async run({ args }) {
    const vm = await (await daemon()).call("vmShow", { params: { vm: args.name } });
    out(vm, !!args.json, () => describe(vm));
  },
});

const fromArg = {
  from: { type: "string", description: "A clone of this snapshot (VM@SNAP): its shape, disks and, started, its running memory with a new identity" },
  cold: { type: "boolean", description: "Boot cold even when a warm template of this image and shape exists (`banger image warm`)" },
} as const;

const create = defineCommand({
  meta: { name: "create", description: "Create a VM (and start it with --start)" },
  args: { ...nameArg, ...createArgs, ...fromArg, start: { type: "boolean", description: "Boot it right away (a clone: run on from its snapshot)" }, ...jsonArg },
  async run({ args }) {
    const { data: vm } = await streamCall("vmCreate", { body: { ...createBody(args.name, args), start: !!args.start, from: args.from, cold: args.cold ? true : undefined } }, { json: !!args.json });
    out(vm, !!args.json, () => `created ${vm.name} (${vm.runtime.state})`);
  },
});

function lifecycle(action: "start" | "restart") {
  return defineCommand({
    meta: { name: action, description: action === "start" ? "Boot a VM and wait for SSH" : "Stop then start a VM" },
    args: { ...nameArg, ...jsonArg },
    async run({ args }) {
      const { data: vm } = await streamCall(action === "start" ? "vmStart" : "vmRestart", { params: { vm: args.name }, body: {} }, { json: !!args.json });
      out(vm, !!args.json, () => `${vm.name} is ${vm.runtime.state}`);
    },
  });
}

const stop = defineCommand({
  meta: { name: "stop", description: "Shut a VM down (ACPI powerdown, then kill after the timeout)" },
  args: { ...nameArg, force: { type: "boolean", description: "Kill without waiting for the guest" }, timeout: { type: "string", description: "Seconds to wait for a clean shutdown (default 20)" }, ...jsonArg },
  async run({ args }) {
    const t = intArg(args.timeout, "--timeout");
    const vm = await (await daemon()).call("vmStop", { params: { vm: args.name }, body: { force: !!args.force, timeoutMs: t !== undefined ? t * 1000 : undefined } });
    out(vm, !!args.json, () => `${vm.name} is ${vm.runtime.state}`);
  },
});

function pauseOrResume(action: "pause" | "resume") {
  return defineCommand({
    meta: {
      name: action,
      description: action === "pause" ? "Stop a running VM's vCPUs (it keeps its memory, disks and network; `banger vm resume` goes on)" : "Let a paused VM run on",
    },
    args: { ...nameArg, ...jsonArg },
    async run({ args }) {
      const vm = await (await daemon()).call(action === "pause" ? "vmPause" : "vmResume", { params: { vm: args.name }, body: {} });
      out(vm, !!args.json, () => `${vm.name} is ${vm.runtime.state}`);
    },
  });
}

const snapshot = defineCommand({
  meta: { name: "snapshot", description: "Checkpoint a VM (memory, device state and disks when it runs; disks when stopped) as VM@SNAP; it runs on" },
  // the positional is the VM, --name the snapshot's
  args: { vm: { type: "positional", description: "VM name", required: true }, name: { type: "string", description: "Snapshot name (default: a UTC timestamp)" }, ...jsonArg },
  async run({ args }) {
    const { data: s } = await streamCall("snapshotCreate", { params: { vm: args.vm }, body: { name: args.name } }, { json: !!args.json });
    out(s, !!args.json, () => `snapshot ${s.vmName}@${s.name} (${s.memory ? `memory and disks; ${s.vmName} was frozen ${s.freezeMs} ms` : "disks"})`);
  },
});

const fork = defineCommand({
  meta: { name: "fork", description: "Snapshot a running VM and start clones of it, each a new machine: banger vm fork VM NEW… | --count N" },
  args: { vm: { type: "positional", description: "VM name", required: true }, count: { type: "string", description: "Make N clones named VM-1 … VM-N" }, ...jsonArg },
  async run({ args }) {
    const given = passthrough.argv.length ? passthrough.argv : ((args._ as string[] | undefined) ?? []).slice(1);
    const n = intArg(args.count, "--count");
    if (n !== undefined && given.length) usage("give new names or --count N, not both");
    if (n !== undefined && n < 1) usage("--count must be at least 1");
    const names = n !== undefined ? Array.from({ length: n }, (_, i) => `${args.vm}-${i + 1}`) : given;
    if (names.length === 0) usage("name the clones (banger vm fork VM NEW…) or give --count N");
    const { data } = await streamCall("snapshotFork", { params: { vm: args.vm }, body: { names } }, { json: !!args.json });
    out(data, !!args.json, () => `forked ${args.vm} at ${data.snapshot.vmName}@${data.snapshot.name} (frozen ${data.snapshot.freezeMs} ms): ${data.vms.map((v) => v.name).join(", ")}`);
  },
});

const rollback = defineCommand({
  meta: { name: "rollback", description: "Put a VM back to one of its snapshots: banger vm rollback VM SNAP (what it did since is discarded)" },
  args: { ...nameArg, snapshot: { type: "positional", description: "SNAP or VM@SNAP", required: true }, ...jsonArg },
  async run({ args }) {
    const { data: vm } = await streamCall("snapshotRollback", { params: { vm: args.name }, body: { snapshot: args.snapshot } }, { json: !!args.json });
    out(vm, !!args.json, () => `${vm.name} is back at ${args.snapshot} (${vm.runtime.state})`);
  },
});

const del = defineCommand({
  meta: { name: "delete", description: "Stop a VM and remove it with its disks, keys and logs (its snapshots stay unless --with-snapshots)" },
  args: { ...nameArg, force: { type: "boolean", description: "Kill without waiting for the guest" }, "with-snapshots": { type: "boolean", description: "Remove the VM's snapshots too" }, ...jsonArg },
  async run({ args }) {
    const r = await (await daemon()).call("vmDelete", { params: { vm: args.name }, query: { force: !!args.force, withSnapshots: !!args["with-snapshots"] } });
    out(r, !!args.json, () => `deleted ${r.deleted}${r.snapshots?.length ? ` and ${r.snapshots.length} snapshot(s)` : ""}`);
  },
});

const run = defineCommand({
  meta: { name: "run", description: "Create (if needed) and boot a VM, run a command in it, exit with its exit code: banger vm run --name X -- CMD ARGS" },
  args: {
    name: { type: "string", description: "VM name", required: true },
    ...createArgs,
    rm: { type: "boolean", description: "Delete the VM when the command ends" },
    stdin: { type: "boolean", description: "Forward this process's stdin to the command" },
    workspace: { type: "string", description: "Prepare this host git repo in the guest (at /root/repo) first and run the command there" },
    ...fromArg,
    ...jsonArg,
  },
  async run({ args }) {
    let argv = passthrough.argv;
    if (argv.length === 0) usage("a command is required after --, e.g. `banger vm run --name demo -- uname -a`");
    const c = await daemon();
    const existing = await getVM(args.name);
    if (!existing) {
      await streamCall("vmCreate", { body: { ...createBody(args.name, args), start: true, from: args.from, cold: args.cold ? true : undefined } }, { json: !!args.json });
    } else if (!existing.alive) {
      await streamCall("vmStart", { params: { vm: args.name }, body: {} }, { json: !!args.json });
    }
    let code = 1;
    try {
      if (args.workspace) {
        // loaded here: node:path and the workspace commands cost every other vm command start-up time
        const [{ prepareWorkspace }, { resolve }] = await Promise.all([import("./workspace.ts"), import("node:path")]);
        const ws = await prepareWorkspace(args.name, { sourcePath: resolve(args.workspace) }, !!args.json);
        // cd as its own argument: the path is data, never spliced into shell text
        argv = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "banger-workspace", ws.guestPath, ...argv];
      }
      code = await execIn(args.name, argv, !!args.json, !!args.stdin);
    } finally {
      if (args.rm) await c.call("vmDelete", { params: { vm: args.name }, query: { force: true } }).catch((e) => fail(e, !!args.json));
    }
    process.exit(code);
  },
});

const exec = defineCommand({
  meta: { name: "exec", description: "Run a command in a running VM: banger vm exec NAME -- CMD ARGS" },
  args: { ...nameArg, stdin: { type: "boolean", description: "Forward this process's stdin to the command" }, ...jsonArg },
  async run({ args }) {
    process.exit(await execIn(args.name, passthrough.argv, !!args.json, !!args.stdin));
  },
});

const ssh = defineCommand({
  meta: { name: "ssh", description: "Interactive shell in a VM (PTY), or one command: banger vm ssh NAME [-- CMD]" },
  args: { ...nameArg, ...jsonArg },
  async run({ args }) {
    if (passthrough.argv.length > 0) process.exit(await execIn(args.name, passthrough.argv, !!args.json));
    const info = await (await daemon()).call("vmSshInfo", { params: { vm: args.name } });
    const { interactiveShell } = await import("./ssh-interactive.ts");
    process.exit(await interactiveShell(info));
  },
});

const logs = defineCommand({
  meta: { name: "logs", description: "Print a VM's serial console log (-f to follow). --json: {data, nextOffset}" },
  args: { ...nameArg, follow: { type: "boolean", alias: "f", description: "Keep printing as the log grows" }, ...jsonArg },
  async run({ args }) {
    const req = { params: { vm: args.name }, query: { follow: !!args.follow } };
    if (!args.json) {
      await streamCall("vmLogs", req, { json: false });
      return;
    }
    const chunks: Buffer[] = [];
    const ev = await (await daemon()).stream("vmLogs", req, (e) => {
      if (e.type === "stdout") chunks.push(Buffer.from(e.data, "base64"));
    });
    out({ data: Buffer.concat(chunks).toString("utf8"), nextOffset: ev.data.offset }, true, () => "");
  },
});

export default defineCommand({
  meta: { name: "vm", description: "Create, run and manage VMs" },
  subCommands: { list, show, create, start: lifecycle("start"), stop, restart: lifecycle("restart"), pause: pauseOrResume("pause"), resume: pauseOrResume("resume"), snapshot, rollback, fork, delete: del, run, exec, ssh, logs },
});
