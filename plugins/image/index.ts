import { join } from "node:path";
import { definePlugin } from "../../src/plugin-api.ts";
import { buildImage } from "./build.ts";
import { deriveImage } from "./derive.ts";

export default definePlugin({
  name: "image",
  description: "Builds Debian bookworm guest images (mmdebstrap from the host's apt sources, Debian cloud kernel, busybox initramfs) and images derived from them (packages, copies, steps in a chroot)",
  setup(ctx) {
    ctx.hook("image:build", async ({ name, dir, progress, result, recipe, base, op, commitOf }) => {
      if (result.built) return; // an earlier plugin already built it
      if (recipe && base) await deriveImage({ recipe, base, dir, exec: ctx.host.exec, fs: ctx.host.fs, progress, op, commitOf, now: () => ctx.host.clock.now() });
      else await buildImage({ name, dir, exec: ctx.host.exec, fs: ctx.host.fs, progress, cacheDir: join(ctx.paths.home, "cache") });
      result.built = true;
    });
  },
});
