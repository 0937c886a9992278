import { definePlugin } from "../../src/plugin-api.ts";
import { createFirecrackerDriver } from "../../src/vmm/firecracker/driver.ts";

/** The Firecracker VMM driver: the production path on hosts with usable KVM. */
export default definePlugin({
  name: "firecracker",
  description: "Firecracker driver: configured over its API socket (checked against the v1.16.1 spec); needs /dev/kvm",
  setup(ctx) {
    ctx.registerDriver(createFirecrackerDriver(ctx.host));
  },
});
