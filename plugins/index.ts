import type { BangerPlugin } from "../src/plugin-api.ts";
import firecracker from "./firecracker/index.ts";
import guest from "./guest/index.ts";
import image from "./image/index.ts";
import netTap from "./net-tap/index.ts";
import netUser from "./net-user/index.ts";
import qemu from "./qemu/index.ts";
import storageDm from "./storage-dm/index.ts";
import storage from "./storage/index.ts";

/** Built-in behaviours, loaded before user plugins, through the same public API. Each VM records its storage and network provider (spec.storage, spec.net) and only those act on it, before ordinary hooks, whatever the order here; qemu first (the default when firecracker cannot run), net-user before net-tap (a QEMU VM's default network is the first registered that serves it), firecracker last (its driver is registered after the others). */
export const builtinPlugins: BangerPlugin[] = [qemu, storageDm, storage, netUser, netTap, guest, image, firecracker];
