import { join } from "node:path";
import { definePlugin, type VMRecord } from "../../src/plugin-api.ts";
import { createFirecrackerDriver } from "./driver.ts";

/**
 * The next free vsock CID (>= 3). Firecracker's vsock is a per-VM unix
 * socket on the host, so a clash would be harmless; distinct CIDs keep the
 * record unambiguous if a host-kernel vsock is ever used.
 */
export function nextVsockCid(vms: VMRecord[]): number {
  return Math.max(2, ...vms.map((v) => v.runtime.vsockCID || 0)) + 1;
}

/** The Firecracker VMM driver: the production path on hosts with usable KVM. */
export default definePlugin({
  name: "firecracker",
  description: "Firecracker driver: configured over its API socket (checked against the v1.16.1 spec); needs /dev/kvm",
  setup(ctx) {
    ctx.registerDriver(createFirecrackerDriver(ctx.host));
    // durable per-VM paths go in the record (VMRuntime), where `vm show --json` and reconcile see them
    ctx.hook("vm:create", ({ vm }) => {
      if (vm.spec.driver !== "firecracker") return;
      vm.runtime.vsockPath = join(vm.runtime.vmDir, "vsock.sock");
      vm.runtime.metricsPath = join(vm.runtime.vmDir, "firecracker.metrics");
      vm.runtime.vsockCID = nextVsockCid(ctx.store.listVMs().filter((v) => v.id !== vm.id));
    });
  },
});
