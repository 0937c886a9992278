import type { BangerPlugin } from "../src/plugin-api.ts";
import firecracker from "./firecracker/index.ts";
import guest from "./guest/index.ts";
import image from "./image/index.ts";
import netTap from "./net-tap/index.ts";
import netUser from "./net-user/index.ts";
import qemu from "./qemu/index.ts";
import storageDm from "./storage-dm/index.ts";
import storage from "./storage/index.ts";

/** Built-in behaviours, loaded before user plugins, through the same public API. Order matters for hooks: disks (storage-dm claims the system disk where device-mapper works, else storage copies it), then network, then the guest seed and SSH wait; firecracker last (its driver is registered after the others). */
export const builtinPlugins: BangerPlugin[] = [qemu, storageDm, storage, netUser, netTap, guest, image, firecracker];
