import type { BangerPlugin } from "../src/core/plugin.ts";
import firecracker from "./firecracker/index.ts";
import guest from "./guest/index.ts";
import image from "./image/index.ts";
import netUser from "./net-user/index.ts";
import qemu from "./qemu/index.ts";
import storage from "./storage/index.ts";

/** Built-in behaviours, loaded before user plugins, through the same public API. Order matters for hooks: disks, then network, then the guest seed and SSH wait. */
export const builtinPlugins: BangerPlugin[] = [qemu, storage, netUser, guest, image, firecracker];
