// `banger vm egress`: show or change a VM's egress policy and read its denial log.
import { join } from "node:path";
import type { Engine } from "../core/engine.ts";
import { EGRESS_LOG_FILE, formatEgress, type EgressDenial, type EgressView } from "../shared/egress.ts";
import type { VMRecord } from "../shared/model.ts";
import type { Clock, FS } from "../host/types.ts";
import type { HandlersFor } from "./router.ts";

export function createEgressRoutes(d: { engine: Engine; fs: FS; clock: Clock }): HandlersFor<"vmEgress"> {
  const { engine } = d;
  return {
    vmEgress: async ({ params, query }) => {
      const vm = engine.getVM(params.vm);
      return _view(d.fs, vm, formatEgress(await engine.effectiveEgress(vm)), query.log);
    },
    vmEgressSet: async ({ params, body }) => {
      const t0 = d.clock.now().getTime();
      const r = await engine.setEgress(params.vm, body.policy);
      const view = await _view(d.fs, r.vm, formatEgress(r.effective), false);
      if (r.applied) view.appliedMs = d.clock.now().getTime() - t0;
      return view;
    },
  };
}

async function _view(fs: FS, vm: VMRecord, effective: string, withLog: boolean): Promise<EgressView> {
  const text = (await fs.readText(join(vm.runtime.vmDir, EGRESS_LOG_FILE)).catch(() => null)) ?? "";
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  const view: EgressView = { vm: vm.name, policy: vm.spec.egress ?? "none", effective, denied: lines.length };
  if (withLog) {
    view.log = [];
    for (const l of lines) {
      try {
        view.log.push(JSON.parse(l) as EgressDenial);
      } catch {
        // a line cut short by a crash mid-write is counted but not shown
      }
    }
  }
  return view;
}
