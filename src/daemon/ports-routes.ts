import type { Engine } from "../core/engine.ts";
import { addPort, removePorts } from "../core/ports.ts";
import type { PortsView } from "../shared/api.ts";
import { BangerError } from "../shared/errors.ts";
import type { VMRecord } from "../shared/model.ts";
import type { HandlersFor } from "./router.ts";

/**
 * `vm port add|rm|ls`: the VM record holds the ports; a running VM gets the
 * change at once from its network provider, a stopped one at its next start.
 * Each change runs under the VM's lock, so it never races a start or stop.
 */
export function createPortRoutes(engine: Engine): { handlers: HandlersFor<"port"> } {
  const view = async (vm: VMRecord, alive: boolean, extra: Partial<PortsView> = {}): Promise<PortsView> => ({ vm: vm.name, alive, ports: vm.spec.ports ?? [], ...extra });
  const change = <T>(name: string, fn: (vm: VMRecord, running: boolean) => Promise<T>): Promise<{ vm: VMRecord; alive: boolean; result: T }> => {
    const first = engine.getVM(name);
    return engine.cache.withLock(first.id, async () => {
      const vm = engine.getVM(first.id);
      const alive = await engine.alive(vm);
      try {
        return { vm, alive, result: await fn(vm, alive) };
      } finally {
        // what was closed stays closed in the record even when a later one failed
        engine.save(vm);
      }
    });
  };
  const handles = async (vm: VMRecord, alive: boolean) => (alive ? await engine.handlesOf(vm) : null);
  return {
    handlers: {
      portList: async ({ params }) => {
        const vm = engine.getVM(params.vm);
        return view(vm, await engine.alive(vm));
      },
      portAdd: async ({ params, body }) => {
        const r = await change(params.vm, async (vm, alive) => addPort(engine.netPorts(vm), vm, await handles(vm, alive), body.spec));
        return view(r.vm, r.alive, { added: r.result });
      },
      portRemove: async ({ params, query }) => {
        if (!query.spec) throw new BangerError("E_BAD_REQUEST", "which port? give a guest port or a spec ([HOSTIP:]HOSTPORT:GUESTPORT[/PROTO])");
        const spec = query.spec;
        const r = await change(params.vm, async (vm, alive) => removePorts(engine.netPorts(vm), vm, await handles(vm, alive), spec));
        return view(r.vm, r.alive, { removed: r.result });
      },
    },
  };
}
