import type { Engine } from "../core/engine.ts";
import { mapBounded } from "../shared/bounded.ts";
import { BangerError, errorMessage } from "../shared/errors.ts";
import { defaultSnapshotName, Snapshots, validateSnapshotName } from "../core/snapshots.ts";
import { vmView } from "./app.ts";
import { meminfoBytes } from "../shared/meminfo.ts";
import type { HandlersFor } from "./router.ts";

/** How many clones of a fork are made at once. */
export const FORK_PARALLEL = 4;

/**
 * A fork of N clones may come to need N times the VM's memory (a clone maps
 * the snapshot's RAM privately: what a guest writes becomes its own): refused
 * up front when that is more than the host has available, rather than found
 * out by the kernel's OOM killer halfway (`--count 1000` of a 256 MiB VM
 * started clones until the host ran short). Unknown memory (no
 * /proc/meminfo) is no refusal.
 */
async function _checkMemoryForClones(engine: Engine, count: number, memoryMiB: number): Promise<void> {
  const text = await engine.deps.host.fs.readText("/proc/meminfo").catch(() => null);
  const bytes = meminfoBytes(text ?? "", "MemAvailable");
  if (!Number.isFinite(bytes) || bytes <= 0) return;
  const availableMiB = Math.floor(bytes / 1048576);
  const needMiB = count * memoryMiB;
  if (needMiB <= availableMiB) return;
  const fits = Math.floor(availableMiB / memoryMiB);
  throw new BangerError(
    "E_BAD_REQUEST",
    `fork of ${count} clones of ${memoryMiB} MiB could need ${needMiB} MiB of RAM; the host has ${availableMiB} MiB available: fork at most ${fits} at a time`,
  );
}

/** Snapshot routes: make one of a VM, roll a VM back to one, list, show and remove them. */
export function createSnapshotRoutes(engine: Engine) {
  const snapshots = new Snapshots(engine);
  const handlers: HandlersFor<"snapshot"> = {
    snapshotCreate: async ({ params, body, ndjson }) => {
      // refused with a 4xx before the stream's 200: a missing VM, a bad or taken name
      const vm = engine.getVM(params.vm);
      if (body.name !== undefined) validateSnapshotName(body.name);
      const taken = body.name !== undefined ? engine.store.snapshots.find(vm.name, body.name) : null;
      if (taken) {
        // a deleted VM's snapshot keeps its VM@SNAP name: a new VM of that name meets it
        const whose = taken.vmId === vm.id ? "" : ` (of an earlier VM named ${vm.name}: \`banger snapshot rm ${vm.name}@${body.name}\` frees the name)`;
        throw new BangerError("E_NAME_TAKEN", `snapshot already exists: ${vm.name}@${body.name}${whose}`);
      }
      return ndjson(async (emit) => ({ type: "result", data: await snapshots.create(vm.id, body, emit.progress) }));
    },
    snapshotRollback: async ({ params, body, ndjson }) => {
      const vm = engine.getVM(params.vm);
      snapshots.get(body.snapshot, vm.name);
      return ndjson(async (emit) => ({ type: "result", data: await vmView(engine, await snapshots.rollback(vm.id, body.snapshot, emit.progress, emit.signal)) }));
    },
    snapshotFork: async ({ params, body, ndjson }) => {
      const vm = engine.getVM(params.vm);
      if (body.names.length === 0) throw new BangerError("E_USAGE", "fork needs at least one new name (or --count N)");
      if (new Set(body.names).size !== body.names.length) throw new BangerError("E_BAD_REQUEST", "fork: the new names must differ");
      for (const name of body.names) await engine.checkCreate({ name, image: vm.spec.image, driver: vm.spec.driver, net: vm.spec.net, storage: vm.spec.storage });
      await _checkMemoryForClones(engine, body.names.length, vm.spec.memoryMiB);
      return ndjson(async (emit) => {
        const snap = await snapshots.create(vm.id, { name: `fork-${defaultSnapshotName(engine.deps.host.clock.now())}` }, emit.progress);
        // in parallel, bounded: a clone's start is mostly waiting (QEMU's start, the state load, the guest's answer), not CPU;
        // each failed clone removes itself, the others are kept and the first failure is the answer
        const made = await mapBounded(body.names, FORK_PARALLEL, async (name) => vmView(engine, await snapshots.createFrom(`${snap.vmName}@${snap.name}`, name, { start: true }, emit.progress, emit.signal)));
        const vms = made.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
        // cancelled, even with every clone made (its requester went away as the last one came up): nothing stays
        const failed: { reason: unknown } | undefined = made.find((r) => r.status === "rejected") ?? (emit.signal.aborted ? { reason: new BangerError("E_CANCELLED", `vm fork ${vm.name}: its request was cancelled`) } : undefined);
        if (failed) {
          await _undoFork(engine, snapshots, `${snap.vmName}@${snap.name}`, vms, emit.signal.aborted);
          throw failed.reason;
        }
        return { type: "result", data: { snapshot: snap, vms } };
      });
    },
    snapshotWarm: async ({ params, body, ndjson }) => {
      if (!engine.store.getImage(params.name)) throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${params.name}`);
      return ndjson(async (emit) => ({ type: "result", data: await snapshots.warm(params.name, body, emit.progress, emit.signal) }));
    },
    snapshotList: async ({ query }) => ({ snapshots: snapshots.list(query.vm) }),
    snapshotShow: async ({ params }) => snapshots.get(params.snap),
    snapshotRemove: async ({ params }) => {
      const s = await snapshots.remove(params.snap);
      return { deleted: `${s.vmName}@${s.name}` };
    },
  };
  return { handlers };
}

/**
 * A fork that failed: its snapshot goes when no clone runs on it, so a fork leaves nothing it made for nothing.
 * Cancelled (the person waiting went away: Ctrl-C), its clones go too, and then its snapshot; a fork that failed
 * on its own keeps the clones it made (each failed one removed itself), and their snapshot with them.
 */
async function _undoFork(engine: Engine, snapshots: Snapshots, snap: string, made: { id: string; name: string }[], cancelled: boolean): Promise<void> {
  const log = engine.deps.log;
  if (cancelled) {
    for (const vm of made) {
      await engine.delete(vm.id, { force: true }).then(
        () => log.info(`fork cancelled: clone ${vm.name} deleted`),
        (e: unknown) => log.warn(`fork cancelled: clone ${vm.name} not deleted: ${errorMessage(e)}`),
      );
    }
  } else if (made.length > 0) return;
  await snapshots.remove(snap).then(
    () => log.info(`fork ${cancelled ? "cancelled" : "failed"}: its snapshot ${snap} removed`),
    (e: unknown) => log.warn(`fork ${cancelled ? "cancelled" : "failed"}: its snapshot ${snap} not removed: ${errorMessage(e)}`),
  );
}
