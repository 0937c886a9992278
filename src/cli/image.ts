import { defineCommand } from "./define.ts";
import { resolve } from "node:path";
import { daemon, intArg, jsonArg, out, sizeArg, streamCall } from "./context.ts";

const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;

const build = defineCommand({
  meta: { name: "build", description: "Build a Debian bookworm guest image from the host's apt sources (cached)" },
  args: { name: { type: "string", description: "Image name (default: default)" }, force: { type: "boolean", description: "Rebuild even if it exists" }, ...jsonArg },
  async run({ args }) {
    const { data: img } = await streamCall("imageBuild", { body: { name: args.name ?? "default", force: !!args.force } }, { json: !!args.json });
    out(img, !!args.json, () => `${img.built ? "built" : "cached"} image ${img.name} (kernel ${img.kernelVersion || "?"}, ${mib(img.sizeBytes)}) in ${img.dir}`);
  },
});

const list = defineCommand({
  meta: { name: "list", description: "List images" },
  args: { ...jsonArg },
  async run({ args }) {
    const { images } = await (await daemon()).call("imageList");
    out(images, !!args.json, () =>
      images.length === 0 ? "no images (build one with `banger image build`)" : images.map((i) => `${i.name.padEnd(16)} ${i.source.padEnd(9)} ${mib(i.sizeBytes).padStart(9)}  ${i.kernelVersion}`).join("\n"),
    );
  },
});

const warm = defineCommand({
  meta: { name: "warm", description: "Boot an image at a shape and keep it as a warm-start template: `vm create --start` / `vm run` of that image and shape then clone it (--cold to boot anyway)" },
  args: {
    name: { type: "positional", description: "Image name", required: true },
    cpus: { type: "string", description: "vCPUs (default 1)" },
    memory: { type: "string", description: "Memory, e.g. 512M (default 256M)" },
    vmm: { type: "string", description: "VMM (default: as for vm create)" },
    ...jsonArg,
  },
  async run({ args }) {
    const { data: s } = await streamCall("snapshotWarm", { params: { name: args.name }, body: { cpus: intArg(args.cpus, "--cpus"), memoryMiB: sizeArg(args.memory, "--memory"), driver: args.vmm } }, { json: !!args.json });
    out(s, !!args.json, () => `warm template ${s.vmName}@${s.name} for image ${s.spec.image} (${s.spec.cpus} cpu, ${s.spec.memoryMiB} MiB)`);
  },
});

const show = defineCommand({
  meta: { name: "show", description: "Show an image and its manifest" },
  args: { name: { type: "positional", required: true, description: "Image name" }, ...jsonArg },
  async run({ args }) {
    const img = await (await daemon()).call("imageShow", { params: { name: args.name } });
    out(img, !!args.json, () => JSON.stringify(img, null, 2));
  },
});

const rm = defineCommand({
  meta: { name: "rm", description: "Remove an image (refused while a VM uses it)" },
  args: { name: { type: "positional", required: true, description: "Image name" }, ...jsonArg },
  async run({ args }) {
    const r = await (await daemon()).call("imageRemove", { params: { name: args.name } });
    out(r, !!args.json, () => `removed image ${r.deleted}`);
  },
});

const imp = defineCommand({
  meta: { name: "import", description: "Import your own kernel + ext4 rootfs (+ initrd) as an image" },
  args: {
    name: { type: "string", required: true, description: "Image name" },
    kernel: { type: "string", required: true, description: "Kernel (bzImage/vmlinuz) path" },
    rootfs: { type: "string", required: true, description: "ext4 root filesystem image path" },
    initrd: { type: "string", description: "initrd path" },
    ...jsonArg,
  },
  async run({ args }) {
    const img = await (await daemon()).call("imageImport", {
      body: {
        name: args.name,
        kernel: resolve(args.kernel),
        rootfs: resolve(args.rootfs),
        initrd: args.initrd ? resolve(args.initrd) : undefined,
      },
    });
    out(img, !!args.json, () => `imported image ${img.name}`);
  },
});

export default defineCommand({
  meta: { name: "image", description: "Build, import and manage guest images" },
  subCommands: { build, list, show, rm, import: imp, warm },
});
