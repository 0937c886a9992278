import type { Engine } from "../core/engine.ts";
import { BangerError } from "../shared/errors.ts";
import { defaultSnapshotName, refuseClone, Snapshots, validateSnapshotName } from "../core/snapshots.ts";
import { vmView } from "./app.ts";
import type { HandlersFor } from "./router.ts";

/** Snapshot routes: make one of a VM, roll a VM back to one, list, show and remove them. */
export function createSnapshotRoutes(engine: Engine) {
  const snapshots = new Snapshots(engine);
  const handlers: HandlersFor<"snapshot"> = {
    snapshotCreate: async ({ params, body, ndjson }) => {
      // refused with a 4xx before the stream's 200: a missing VM, a bad or taken name
      const vm = engine.getVM(params.vm);
      if (body.name !== undefined) validateSnapshotName(body.name);
      if (body.name !== undefined && engine.store.snapshots.find(vm.name, body.name)) throw new BangerError("E_NAME_TAKEN", `snapshot already exists: ${vm.name}@${body.name}`);
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
      refuseClone({ memory: true, spec: vm.spec, vmName: vm.name, name: "fork" });
      for (const name of body.names) await engine.checkCreate({ name, image: vm.spec.image, driver: vm.spec.driver, net: vm.spec.net, storage: vm.spec.storage });
      return ndjson(async (emit) => {
        const snap = await snapshots.create(vm.id, { name: `fork-${defaultSnapshotName(engine.deps.host.clock.now())}` }, emit.progress);
        // one after the other: each restore is CPU-bound, and a failed one is removed before the next begins
        const vms = [];
        for (const name of body.names) vms.push(await vmView(engine, await snapshots.createFrom(`${snap.vmName}@${snap.name}`, name, { start: true }, emit.progress, emit.signal)));
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
