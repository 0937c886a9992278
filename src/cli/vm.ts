import { defineCommand } from "./define.ts";
import { BangerError } from "../shared/errors.ts";
import type { VMView } from "../shared/api.ts";
import type { EgressView } from "../shared/egress.ts";
import { daemon, fail, intArg, jsonArg, out, passthrough, readStdinUpTo, sizeArg, streamCall, usage, writeChunk } from "./context.ts";
import { formatDuration, parseDuration } from "../shared/duration.ts";
import { nowMs } from "../host/clock.ts";
import { SHAPE_FIELDS, type ShapeKey } from "../shared/model.ts";
import { config } from "../host/config.ts";
import { execArgs, execOptions } from "./exec-args.ts";
import type { ExecOptions } from "../shared/exec-options.ts";
import { pickVMName } from "../shared/vm-names.ts";
import { MAX_EXEC_STDIN_BYTES } from "../shared/routes.ts";
import { formatPort, parsePortSpec, portsColumn, samePort } from "../shared/ports.ts";
import { table } from "./table.ts";
import { log } from "./log.ts";

const nameArg = { name: { type: "positional", description: "VM name", required: true } } as const;


/** --ttl / --idle-timeout: "20s", "5m", "1h30m", "2d" (or "none" where it clears) → ms; 0 for none. */
function durationArg(v: unknown, what: string, noneOk = false): number | undefined {
  if (v === undefined || v === "") return undefined;
  if (noneOk && v === "none") return 0;
  const ms = parseDuration(String(v));
  if (ms === null) usage(`${what} must be a duration like 90s, 5m, 1h30m or 2d${noneOk ? ", or none" : ""}; got ${JSON.stringify(v)}`);
  return ms;
}

function actionArg(v: unknown, what: "--ttl-action" | "--idle-action"): "delete" | "stop" | undefined {
  if (v === undefined || v === "") return undefined;
  if (v !== "delete" && v !== "stop") usage(`${what} must be delete or stop, got ${JSON.stringify(v)}`);
  return v;
}

/** "in 4m12s" / "overdue": how far a deadline is from now. */
function until(iso: string): string {
  const ms = Date.parse(iso) - nowMs();
  return ms > 0 ? `in ${formatDuration(ms)}` : "overdue";
}

/** The lifetime lines of `vm show`. */
function lifetimeLines(vm: VMView): string[] {
  const l = vm.lifetime;
  if (!l) return [];
  const lines: string[] = [];
  if (l.expiresAt) lines.push(`expires:   ${l.expiresAt} (${until(l.expiresAt)}, then ${l.ttlAction})`);
  if (l.idleTimeoutMs) {
    const open = vm.requestsOpen ?? 0;
    const when = open
      ? `; in use now (${open} request${open === 1 ? "" : "s"} open: the clock starts when ${open === 1 ? "it ends" : "they end"})`
      : l.idleDeadline && (vm.runtime.state === "running" || l.idleAction === "delete")
        ? `; idle deadline ${l.idleDeadline} (${until(l.idleDeadline)})`
        : "";
    lines.push(`idle:      ${l.idleAction === "delete" ? "deleted" : "stops"} after ${formatDuration(l.idleTimeoutMs)} without use${when}`);
  }
  return lines;
}

/** The EXPIRES column of `vm list`: the nearest deadline that applies. */
function nearestDeadline(vm: VMView): string {
  const l = vm.lifetime;
  const ttl = l?.expiresAt ? `${until(l.expiresAt)} (${l.ttlAction})` : "";
  const idle = !l?.idleDeadline || !(vm.runtime.state === "running" || l.idleAction === "delete") ? "" : vm.requestsOpen ? "in use" : `idle ${until(l.idleDeadline)}${l.idleAction === "delete" ? " (delete)" : ""}`;
  return [ttl, idle].filter(Boolean).join(", ") || "-";
}

function describe(vm: VMView): string {
  const r = vm.runtime;
  const lines = [
    `name:      ${vm.name}`,
    `id:        ${vm.id}`,
    `state:     ${vm.halted ? "halted" : r.state}${vm.alive ? " (alive, pid " + vm.pid + ")" : ""}`,
    ...(vm.halted ? [`halted:    ${vm.halted}; once that is fixed, \`banger vm resume ${vm.name}\` lets it run on`] : []),
    `image:     ${vm.spec.image}`,
    `driver:    ${vm.spec.driver}`,
    `cpus:      ${vm.spec.cpus}`,
    `memory:    ${vm.spec.memoryMiB} MiB`,
    `net:       ${vm.spec.net ?? "user"}${r.guestIP ? ` (${r.guestIP}, ${r.dnsName})` : ""}`,
    `storage:   ${vm.spec.storage}`,
    `egress:    ${vm.spec.egress ?? "none"}`,
    `ssh:       ${r.sshPort ? `${r.sshHost}:${r.sshPort}` : "-"}`,
    `dir:       ${r.vmDir}`,
    ...lifetimeLines(vm),
  ];
  for (const p of vm.spec.ports ?? []) lines.push(`port:      ${formatPort(p)}${p.reach.length ? `  (${p.reach.join(", ")})` : ""}`);
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
  egress: { type: "string", description: "Egress policy: none, all (public addresses) or a list like pkgs.example.org,*.example.com:443,198.51.100.0/24 (default: config.json's egress, else none)" },
  storage: { type: "string", description: "Storage provider: dm (dm-snapshot; the default where device-mapper works), copy (sparse/reflink copy) or a plugin's (`banger plugin list`)" },
  ttl: { type: "string", description: "Delete the VM this long after it is created, e.g. 30m, 2h, 1d (see --ttl-action; change with `banger vm ttl`)" },
  "ttl-action": { type: "string", description: "What the TTL does: delete (default) or stop" },
  "idle-timeout": { type: "string", description: "Stop the VM after this long with no exec, ssh, session, workspace or file use, e.g. 15m (see --idle-action)" },
  "idle-action": { type: "string", description: "What the idle timeout does: stop (default) or delete" },
  publish: { type: "string", alias: "p", description: "Publish a guest port: [HOSTIP:]HOSTPORT:GUESTPORT[/tcp|/udp] (host IP default 127.0.0.1, HOSTPORT 0: any free one); repeatable" },
} as const;

/** --publish/-p may repeat; citty keeps only the last, so read them from argv (before `--`). */
function publishedArgs(): string[] | undefined {
  const argv = process.argv;
  const found: string[] = [];
  for (let i = 0; i < argv.length && argv[i] !== "--"; i++) {
    const a = argv[i]!;
    if ((a === "--publish" || a === "-p") && argv[i + 1] !== undefined) found.push(argv[++i]!);
    else if (a.startsWith("--publish=")) found.push(a.slice("--publish=".length));
  }
  return found.length ? found : undefined;
}

function createBody(name: string, a: Record<string, unknown>) {
  const ttlMs = durationArg(a.ttl, "--ttl");
  const ttlAction = actionArg(a["ttl-action"], "--ttl-action");
  if (ttlAction && ttlMs === undefined) usage("--ttl-action needs --ttl");
  const idleTimeoutMs = durationArg(a["idle-timeout"], "--idle-timeout");
  const idleAction = actionArg(a["idle-action"], "--idle-action");
  if (idleAction && idleTimeoutMs === undefined) usage("--idle-action needs --idle-timeout");
  return {
    ttlMs,
    ttlAction,
    idleTimeoutMs,
    idleAction,
    name,
    image: a.image as string | undefined,
    cpus: intArg(a.cpus, "--cpus", 1),
    memoryMiB: sizeArg(a.memory, "--memory"),
    diskMiB: sizeArg(a.disk, "--disk"),
    workDiskMiB: sizeArg(a["work-disk"], "--work-disk"),
    driver: (a.vmm ?? a.driver) as string | undefined,
    // the daemon checks both against the providers its plugins registered
    net: a.net as string | undefined,
    storage: a.storage as string | undefined,
    publish: publishedArgs(),
    egress: a.egress as string | undefined,
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

/** Run argv in the VM through the daemon's pooled SSH connection; returns the exit code. `--json` (on stderr: stdout is the command's) adds `extra`. */
async function execIn(name: string, argv: string[], json: boolean, stdin?: boolean, options: ExecOptions = {}, extra: Record<string, unknown> = {}, signal?: AbortSignal): Promise<number> {
  if (argv.length === 0) usage("a command is required after --, e.g. `banger vm exec NAME -- uname -a`");
  const body: { argv: string[]; stdin?: string } & ExecOptions = { argv, ...options };
  if (stdin) {
    const input = await readStdinUpTo(MAX_EXEC_STDIN_BYTES, "--stdin", "it is sent whole before the command starts: copy bigger input into the VM first (`banger vm cp FILE VM:/PATH`), or stream it to a session (`banger session start VM --name N -- CMD`, then `banger session send`)");
    body.stdin = Buffer.from(input).toString("base64");
  }
  // without a caller's own handling (vm run --rm deletes its VM on a signal), a signal goes on to the command
  const forwarding = signal ? null : forwardSignals(name);
  let ev: Awaited<ReturnType<typeof streamCall<"vmExec">>>;
  try {
    ev = await streamCall("vmExec", { params: { vm: name }, body }, { json: false, signal, endWithReader: true, onEvent: (e) => e.type === "exec" && forwarding?.running(e.id) });
  } finally {
    forwarding?.done();
  }
  const code = ev.code;
  if (json) writeChunk(2, JSON.stringify({ exitCode: code, ...extra }) + "\n");
  return code;
}

/**
 * While `vm exec` runs: SIGINT, SIGTERM or SIGHUP to the CLI (Ctrl-C, timeout(1), a closed terminal) is sent on
 * to the command, which may clean up and exit as it would in a terminal; its output goes on and its exit code is
 * ours. A second signal, or one before the command runs, ends the CLI at once with 128 + its number, and the
 * daemon then kills the command's whole process group (as `| head` does).
 */
function forwardSignals(vm: string): { running(id: string): void; done(): void } {
  let id: string | null = null;
  let sent = false;
  const handlers = ([["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const).map(([sig, n]) => {
    const h = () => {
      if (id === null || sent) process.exit(128 + n);
      sent = true;
      const exec = id;
      void daemon()
        .then((c) => c.call("vmExecSignal", { params: { vm, exec }, body: { signal: sig.slice(3) } }))
        .catch(() => {}); // it ended meanwhile: its exit is on the way
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  return {
    running: (i) => void (id = i),
    done: () => {
      for (const [sig, h] of handlers) process.off(sig, h);
    },
  };
}

/** Create a VM under a free generated name (another client may take the one picked: then pick again); `picked` hears each name tried. */
async function createNamed(args: Record<string, unknown>, json: boolean, o: { lease?: RunLease; picked?: (name: string) => void; signal?: AbortSignal } = {}): Promise<string> {
  const c = await daemon();
  for (let attempt = 0; ; attempt++) {
    const taken = new Set((await c.call("vmList")).vms.map((v) => v.name));
    const name = pickVMName(taken, Math.random);
    o.picked?.(name);
    try {
      await streamCall("vmCreate", { body: { ...createBody(name, args), ...o.lease, start: true, from: args.from as string | undefined, cold: args.cold ? true : undefined } }, { json, signal: o.signal });
      return name;
    } catch (e) {
      if (!(e instanceof BangerError && e.code === "E_NAME_TAKEN") || attempt >= 4) throw e;
    }
  }
}

/** How `vm run` prints each shape field's value in its refusals. */
const _SHOW_SHAPE: Record<ShapeKey, (v: string | number) => string> = {
  image: String,
  cpus: (v) => `${v} cpu`,
  memoryMiB: (v) => `${v} MiB of memory`,
  diskMiB: (v) => (v ? `a ${v} MiB disk` : "the image's disk size"),
  workDiskMiB: (v) => (v ? `a ${v} MiB work disk` : "no work disk"),
  driver: (v) => `VMM ${v}`,
  net: (v) => `network ${v}`,
  storage: (v) => `storage ${v}`,
};

/**
 * `vm run --name X` of a VM that exists runs in it as it is: what would need a new VM (another image, size, VMM,
 * network or storage; --from) is refused, not ignored; what can change on it is applied, as `vm ttl`, `vm egress`
 * and `vm port add` would (the lifetime from now; with --rm, the lease).
 */
async function reuseExisting(vm: VMView, body: ReturnType<typeof createBody>, from: string | undefined, lease: RunLease | undefined): Promise<void> {
  const again = `\`vm run --name\` runs in the VM it names as it is (\`banger vm delete ${vm.name}\` first to make it anew)`;
  if (from !== undefined) usage(`vm ${vm.name} exists: --from makes a new VM; ${again}`);
  for (const { key, flag } of SHAPE_FIELDS) {
    const asked = body[key];
    const has = vm.spec[key] ?? (key === "net" ? "user" : "");
    const show = _SHOW_SHAPE[key];
    if (asked !== undefined && asked !== has) usage(`vm ${vm.name} exists with ${show(has)}, not ${show(asked)} (${flag}); ${again}`);
  }
  const c = await daemon();
  if (body.ttlMs !== undefined || body.idleTimeoutMs !== undefined || lease) {
    await c.call("lifetimeSet", { params: { vm: vm.name }, body: { ttlMs: body.ttlMs, ttlAction: body.ttlAction, idleTimeoutMs: lease?.idleTimeoutMs ?? body.idleTimeoutMs, idleAction: lease?.idleAction ?? body.idleAction } });
  }
  if (body.egress !== undefined && body.egress !== vm.spec.egress) await c.call("vmEgressSet", { params: { vm: vm.name }, body: { policy: body.egress } });
  for (const spec of body.publish ?? []) {
    if (!(vm.spec.ports ?? []).some((p) => samePort(p, parsePortSpec(spec)))) await c.call("portAdd", { params: { vm: vm.name }, body: { spec } });
  }
}

/** An idle timeout that deletes the VM: `vm run --rm`'s lease (see RunRemoval). */
type RunLease = { idleTimeoutMs: number; idleAction: "delete" };

/** How long a `vm run --rm` VM may go unused before its daemon deletes it (BANGER_RUN_RM_LEASE seconds, default 30). */
function runLease(): RunLease {
  const s = Number(config.runRmLease ?? "");
  return { idleTimeoutMs: (Number.isFinite(s) && s > 0 ? s : 30) * 1000, idleAction: "delete" };
}

/**
 * `vm run --rm`'s VM goes however the run ends. The CLI deletes it when the command ends, when its creation failed,
 * and on SIGINT, SIGTERM or SIGHUP (its streams cut first, so a boot or the command stops at once; then it exits
 * 128 + the signal's number, as a shell would). What no CLI lives to do (kill -9, a daemon that died) its daemon
 * does: the VM carries a lease (runLease), which a live run's requests keep from running out.
 */
class RunRemoval {
  readonly cut = new AbortController();
  /** The VM's name once known (a generated one is picked before its create is sent). */
  name: string | undefined;
  /** The exit code a caught signal asks for (128 + its number), once one came. */
  exitCode: number | null = null;
  private removing: Promise<void> | null = null;

  constructor(private readonly json: boolean) {}

  /** Delete the VM (once; a VM already gone is fine). */
  remove(): Promise<void> {
    const name = this.name;
    if (name === undefined) return Promise.resolve();
    this.removing ??= (async () => {
      try {
        await (await daemon()).call("vmDelete", { params: { vm: name }, query: { force: true } });
      } catch (e) {
        if (!(e instanceof BangerError && e.code === "E_VM_NOT_FOUND")) fail(e, this.json);
      }
    })();
    return this.removing;
  }

  /** From now until the process ends: a signal cuts the run's streams, deletes the VM and exits; a second one exits at once. */
  onSignals(): void {
    for (const [sig, n] of [["SIGINT", 2], ["SIGTERM", 15], ["SIGHUP", 1]] as const) {
      process.on(sig, () => {
        if (this.exitCode !== null) process.exit(128 + n);
        this.exitCode = 128 + n;
        this.cut.abort();
        // remove() never rejects: a failure is reported, and the process ends, in it
        this.remove().then(() => this.exitIfInterrupted(), () => this.exitIfInterrupted());
      });
    }
  }

  /** After the removal: a run a signal cut exits with its code, whichever of its paths gets here first. */
  exitIfInterrupted(): void {
    if (this.exitCode !== null) process.exit(this.exitCode);
  }
}

const list = defineCommand({
  meta: { name: "list", description: "List VMs" },
  args: { ...jsonArg },
  async run({ args }) {
    const { vms } = await (await daemon()).call("vmList");
    out(vms, !!args.json, () =>
      vms.length === 0
        ? "no vms (create one with `banger vm run --name NAME -- CMD`)"
        : table([["NAME", "STATE", "ALIVE", "IMAGE", "SSH", "EXPIRES", "PORTS"], ...vms.map((v) => [v.name, v.halted ? "halted" : v.runtime.state, v.alive ? "yes" : "no", v.spec.image, v.runtime.sshPort ? `${v.runtime.sshHost}:${v.runtime.sshPort}` : "-", nearestDeadline(v), portsColumn(v.spec.ports)])]),
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
    await _warnIfOpensHost(args.egress, !!args.json);
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
      description: action === "pause" ? "Stop a running VM's vCPUs (it keeps its memory, disks and network; `banger vm resume` goes on)" : "Let a paused VM run on (or one its VMM halted, e.g. on a full host disk, once the cause is gone)",
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
  meta: { name: "run", description: "Create (if needed) and boot a VM, run a command in it, exit with its exit code: banger vm run [--name X] -- CMD ARGS" },
  args: {
    name: { type: "string", description: "VM name (default: a new VM with a generated name, printed on stderr)" },
    ...createArgs,
    ...execArgs,
    rm: { type: "boolean", description: "Delete the VM however the run ends: the command's exit, Ctrl-C/SIGTERM (exit 128+N), a failed boot; a CLI killed -9 leaves it to the daemon (30 s idle lease)" },
    stdin: { type: "boolean", description: "Forward this process's stdin to the command" },
    workspace: { type: "string", description: "Prepare this host git repo in the guest (at /root/repo) first and run the command there" },
    ...fromArg,
    ...jsonArg,
  },
  async run({ args }) {
    const argv = passthrough.argv;
    if (argv.length === 0) usage("a command is required after --, e.g. `banger vm run --name demo -- uname -a`");
    const options = await execOptions(args);
    // a --workspace that is no repo is bad input: said before a VM is made and booted for it
    const workspace = args.workspace ? await _workspaceSource(args.workspace) : undefined;
    const c = await daemon();
    const json = !!args.json;
    const removal = args.rm ? new RunRemoval(json) : null;
    const lease = removal ? runLease() : undefined;
    // the lease is the VM's idle timeout: one given here would be overwritten
    if (lease && args["idle-timeout"] !== undefined) usage("--rm deletes the VM when the command ends: it takes no --idle-timeout");
    removal?.onSignals();
    const signal = removal?.cut.signal;
    let name = args.name;
    try {
      if (name === undefined) {
        name = await createNamed(args, json, { lease, picked: (n) => removal && (removal.name = n), signal });
        if (!json) writeChunk(2, `vm name: ${name}\n`);
      } else {
        const body = createBody(name, args);
        const existing = await getVM(name);
        if (!existing) {
          if (removal) removal.name = name;
          await streamCall("vmCreate", { body: { ...body, ...lease, start: true, from: args.from, cold: args.cold ? true : undefined } }, { json, signal });
        } else {
          if (removal) removal.name = name;
          await reuseExisting(existing, body, args.from, lease);
          if (!existing.alive) await streamCall("vmStart", { params: { vm: name }, body: {} }, { json, signal });
        }
      }
    } catch (e) {
      // a name someone else holds is not ours to delete
      if (removal && !(e instanceof BangerError && e.code === "E_NAME_TAKEN")) await removal.remove();
      removal?.exitIfInterrupted();
      throw e;
    }
    let code = 1;
    try {
      if (workspace) {
        const { prepareWorkspace } = await import("./workspace.ts");
        // force: a VM made for this run has no work of its own (a --from snapshot keeps whatever its workspace held)
        const ws = await prepareWorkspace(name, { sourcePath: workspace, force: true }, json);
        // -w wins over the workspace, as an explicit -w would in Docker
        options.cwd ??= ws.guestPath;
      }
      code = await execIn(name, argv, json, !!args.stdin, options, { name }, signal);
    } finally {
      await removal?.remove();
      removal?.exitIfInterrupted();
    }
    process.exit(code);
  },
});

/** The absolute path of a --workspace, checked to be in a git work tree (exit 2 if git says it is not; the daemon checks the rest). */
async function _workspaceSource(given: string): Promise<string> {
  // loaded here: node:path and the exec seam cost every other vm command start-up time
  const [{ resolve }, { createExec }] = await Promise.all([import("node:path"), import("../host/exec.ts")]);
  const path = resolve(given);
  const r = await createExec().run("git", ["-C", path, "rev-parse", "--show-toplevel"], { check: false });
  if (r.exitCode !== 0 && /^fatal: /m.test(r.stderr)) usage(`--workspace: ${path} is not a git repository`);
  return path;
}

const ttl = defineCommand({
  meta: { name: "ttl", description: "Set a VM's TTL from now (or `none`), and/or its idle timeout: banger vm ttl NAME 2h [--ttl-action stop] [--idle-timeout 15m|none] [--idle-action delete]" },
  args: {
    ...nameArg,
    duration: { type: "positional", description: "TTL from now, e.g. 30m, 2h, 1d; `none` removes it", required: false },
    "ttl-action": createArgs["ttl-action"],
    "idle-timeout": { type: "string", description: "Stop after this long without use, e.g. 15m; `none` removes it" },
    "idle-action": createArgs["idle-action"],
    ...jsonArg,
  },
  async run({ args }) {
    const ttlMs = durationArg(args.duration, "the TTL", true);
    const ttlAction = actionArg(args["ttl-action"], "--ttl-action");
    const idleTimeoutMs = durationArg(args["idle-timeout"], "--idle-timeout", true);
    const idleAction = actionArg(args["idle-action"], "--idle-action");
    if (ttlMs === undefined && ttlAction === undefined && idleTimeoutMs === undefined && idleAction === undefined) {
      usage("give a TTL (e.g. `banger vm ttl NAME 2h`, or `none`), --ttl-action, --idle-timeout or --idle-action");
    }
    const vm = await (await daemon()).call("lifetimeSet", { params: { vm: args.name }, body: { ttlMs, ttlAction, idleTimeoutMs, idleAction } });
    out(vm, !!args.json, () => lifetimeLines(vm).join("\n") || `${vm.name} has no ttl and no idle timeout`);
  },
});

const exec = defineCommand({
  meta: { name: "exec", description: "Run a command in a running VM: banger vm exec NAME -- CMD ARGS" },
  args: { ...nameArg, stdin: { type: "boolean", description: `Forward this process's stdin to the command: read whole, up to its end (at most ${Math.floor(MAX_EXEC_STDIN_BYTES / 1048576)} MiB), before the command starts` }, ...execArgs, ...jsonArg },
  async run({ args }) {
    const options = await execOptions(args);
    process.exit(await execIn(args.name, passthrough.argv, !!args.json, !!args.stdin, options));
  },
});

const ssh = defineCommand({
  meta: { name: "ssh", description: "Interactive shell in a VM (PTY), or one command: banger vm ssh NAME [-- CMD] (CMD gets this process's stdin when it is not a terminal, as with ssh)" },
  args: {
    ...nameArg,
    "ignore-stdin": { type: "boolean", alias: "n", description: "With a CMD: give it no stdin (as ssh -n), e.g. in a loop that reads its own" },
    ...jsonArg,
  },
  async run({ args }) {
    // as `ssh host cmd`: piped input reaches the command (it was dropped, exit 0); a terminal is not read
    if (passthrough.argv.length > 0) process.exit(await execIn(args.name, passthrough.argv, !!args.json, !args["ignore-stdin"] && !process.stdin.isTTY));
    const c = await daemon();
    const info = await c.call("vmSshInfo", { params: { vm: args.name } });
    const { holdInUse, interactiveShell } = await import("./ssh-interactive.ts");
    // the shell's traffic goes straight to the guest: the hold tells the daemon someone is using the VM, and the
    // daemon tells us when the VM cannot answer any more (its VMM halted it), which SSH would notice only much later
    const cut = new AbortController();
    let refused: BangerError | null = null;
    const hold = holdInUse(c, args.name, {
      onRefused: (e) => {
        refused = e;
        cut.abort();
      },
    });
    let code: number;
    try {
      code = await interactiveShell(info, cut.signal);
    } finally {
      await hold.release();
    }
    if (refused) throw refused;
    process.exit(code);
  },
});

const logs = defineCommand({
  meta: { name: "logs", description: "Print a VM's serial console log (-f to follow). --json: {data, nextOffset}" },
  args: { ...nameArg, follow: { type: "boolean", alias: "f", description: "Keep printing as the log grows" }, ...jsonArg },
  async run({ args }) {
    const req = { params: { vm: args.name }, query: { follow: !!args.follow } };
    if (!args.json) {
      await streamCall("vmLogs", req, { json: false, endWithReader: !!args.follow });
      return;
    }
    const chunks: Buffer[] = [];
    const ev = await (await daemon()).stream("vmLogs", req, (e) => {
      if (e.type === "stdout") chunks.push(Buffer.from(e.data, "base64"));
    });
    out({ data: Buffer.concat(chunks).toString("utf8"), nextOffset: ev.data.offset }, true, () => "");
  },
});

/** A policy whose CIDR entries open the host's loopback or private ranges gets a warning: 0.0.0.0/0 is more than `all`. */
async function _warnIfOpensHost(policy: unknown, json: boolean): Promise<void> {
  if (typeof policy !== "string" || json || !/\//.test(policy)) return;
  const { parseEgress, openedHostRanges } = await import("../shared/egress.ts");
  let opened: string[] = [];
  try {
    opened = openedHostRanges(parseEgress(policy));
  } catch {
    return; // the daemon says what is wrong with it
  }
  if (opened.length) log().warn(`--egress ${policy} opens ${opened.join(", ")} to the guest (\`all\` is the public internet only)`);
}

function describeEgress(v: EgressView, showLog: boolean): string {
  const lines = [`policy:    ${v.policy}`];
  if (v.effective !== v.policy) lines.push(`effective: ${v.effective} (with plugin sources)`);
  lines.push(`denied:    ${v.denied}`);
  if (v.appliedMs !== undefined) lines.push(`applied in ${v.appliedMs} ms`);
  if (showLog) for (const d of v.log ?? []) lines.push(`${d.time}  ${d.via.padEnd(8)} ${d.dest}:${d.port}${d.name && d.name !== d.dest ? ` (${d.name})` : ""}  ${d.reason}`);
  return lines.join("\n");
}

const egress = defineCommand({
  meta: { name: "egress", description: "Show a VM's egress policy, or change it (applied to a running VM at once): banger vm egress NAME [none|all|LIST] [--log]" },
  args: {
    ...nameArg,
    policy: { type: "positional", description: "New policy: none, all or a comma-separated list (domain, *.domain, IP or CIDR, each with an optional :PORT)", required: false },
    log: { type: "boolean", description: "List the denied attempts (time, destination, port, name, why)" },
    ...jsonArg,
  },
  async run({ args }) {
    const c = await daemon();
    const policy = args.policy as string | undefined;
    let v = policy === undefined ? await c.call("vmEgress", { params: { vm: args.name }, query: { log: !!args.log } }) : await c.call("vmEgressSet", { params: { vm: args.name }, body: { policy } });
    if (policy !== undefined && args.log) v = { ...v, log: (await c.call("vmEgress", { params: { vm: args.name }, query: { log: true } })).log };
    await _warnIfOpensHost(policy, !!args.json);
    out(v, !!args.json, () => describeEgress(v, !!args.log));
  },
});

export default defineCommand({
  meta: { name: "vm", description: "Create, run and manage VMs" },
  subCommands: {
    list, show, create, start: lifecycle("start"), stop, restart: lifecycle("restart"), pause: pauseOrResume("pause"), resume: pauseOrResume("resume"), snapshot, rollback, fork, delete: del, run, exec, ssh, logs, ttl, egress,
    commit: () => import("./vm-commit.ts").then((m) => m.default),
    port: () => import("./vm-port.ts").then((m) => m.default),
    stats: () => import("./vm-stats.ts").then((m) => m.default),
    // loaded on use: the file commands' modules cost other vm commands nothing
    cp: () => import("./files.ts").then((m) => m.cp),
    files: () => import("./files.ts").then((m) => m.files),
  },
});
