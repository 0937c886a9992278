import { join } from "node:path";
import { BangerError, definePlugin, execStoppedBy, mayBeFromOci, readPrivileges } from "../../src/plugin-api.ts";
import { buildImage } from "./build.ts";
import { deriveImage } from "./derive.ts";
import { importOci } from "./oci.ts";

export default definePlugin({
  name: "image",
  description: "Builds Debian bookworm guest images (mmdebstrap from the host's apt sources, Debian cloud kernel, busybox initramfs) and images derived from them (packages, copies, steps in a chroot)",
  setup(ctx) {
    ctx.hook("image:build", async ({ name, dir, progress, result, recipe, base, op, commitOf, oci }) => {
      if (result.built) return; // an earlier plugin already built it
      // the CLI's Ctrl-C stops the build: every tool it runs is stopped (mmdebstrap unmounts what it mounted)
      const exec = execStoppedBy(ctx.host.exec, op.signal);
      if (oci && base) await importOci({ name, input: oci, base, dir, exec, fs: ctx.host.fs, progress, now: () => ctx.host.clock.now() });
      else if (!(await _isRootOrUnknown(ctx.host.fs))) {
        // said before any work, in one line, not as mmdebstrap's "need to be root" or unshare's EPERM some seconds in
        const what = commitOf ? `vm commit (its disk is scrubbed in a chroot)` : recipe ? `image build --from (its steps run in a chroot)` : `image build (mmdebstrap --mode=root, a chroot)`;
        throw new BangerError("E_PERMISSION", `${what} needs root: run banger as root, or import an image built by root (\`banger image import NAME --kernel K --rootfs R --initrd I\`); VMs themselves run without root`);
      } else if (recipe && base) await deriveImage({ recipe, base, dir, exec, fs: ctx.host.fs, progress, op, commitOf, now: () => ctx.host.clock.now() });
      else await buildImage({ name, dir, exec, fs: ctx.host.fs, progress, cacheDir: join(ctx.paths.home, "cache") });
      // a step that runs no tool (the initramfs, the seed) does not see the abort: the build ends here
      if (op.signal.aborted) throw new BangerError("E_CANCELLED", `image ${name}: its request was cancelled`);
      result.built = true;
    });
    // an imported OCI image, and one built or committed on it, boots banger's init from /.banger (its manifest says so): tell the initramfs
    ctx.hook("vm:start:before", async ({ vm, boot }) => {
      const image = ctx.store.getImage(vm.spec.image);
      if (!image || !mayBeFromOci(image)) return;
      const text = await ctx.host.fs.readText(join(image.dir, "manifest.json"));
      const init = text ? (JSON.parse(text) as { init?: unknown }).init : undefined;
      if (typeof init === "string" && /^\/[A-Za-z0-9._/-]+$/.test(init)) boot.kernelArgs.push(`banger.init=${init}`);
    });
  },
});

/** Root, or a host that does not say (a test's stand-in): what a build in a chroot needs. */
async function _isRootOrUnknown(fs: Parameters<typeof readPrivileges>[0]): Promise<boolean> {
  const { uid } = await readPrivileges(fs);
  return uid === null || uid === 0;
}
