import { definePlugin } from "../../src/plugin-api.ts";
import { createQemuDriver } from "./driver.ts";

/** The QEMU VMM driver (KVM where really usable, TCG otherwise). */
export default definePlugin({
  name: "qemu",
  description: "QEMU driver: KVM where usable, TCG otherwise; QMP as the API socket",
  setup(ctx) {
    ctx.registerDriver(createQemuDriver(ctx.host, { log: (line) => ctx.log.info(line) }));
  },
});
