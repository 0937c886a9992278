import { join } from "node:path";
import { definePlugin } from "../../src/plugin-api.ts";
import { buildImage } from "./build.ts";

export default definePlugin({
  name: "image",
  description: "Builds Debian bookworm guest images (mmdebstrap from the host's apt sources, Debian cloud kernel, busybox initramfs)",
  setup(ctx) {
    ctx.hook("image:build", async ({ name, dir, progress, result }) => {
      if (result.built) return; // an earlier plugin already built it
      await buildImage({ name, dir, exec: ctx.host.exec, fs: ctx.host.fs, progress, cacheDir: join(ctx.paths.home, "cache") });
      result.built = true;
    });
  },
});
