import { defineCommand } from "./define.ts";
import { resolve } from "node:path";
import { daemon, intArg, jsonArg, out, sizeArg, streamCall, usage } from "./context.ts";
import { BangerError } from "../shared/errors.ts";
import { log } from "./log.ts";

const mib = (b: number) => `${(b / 1048576).toFixed(0)} MiB`;

/** A flag that may repeat (citty keeps only the last): every value, in order, from argv. */
function repeated(flag: string): string[] {
  const argv = process.argv;
  const found: string[] = [];
  for (let i = 0; i < argv.length && argv[i] !== "--"; i++) {
    const a = argv[i]!;
    if (a === `--${flag}` && argv[i + 1] !== undefined) found.push(argv[++i]!);
    else if (a.startsWith(`--${flag}=`)) found.push(a.slice(flag.length + 3));
  }
  return found;
}

/** --copy HOST:GUEST with HOST made absolute here, where "." means the user's cwd. */
function resolveCopy(spec: string): string {
  const i = spec.lastIndexOf(":");
  return i > 0 ? `${resolve(spec.slice(0, i))}${spec.slice(i)}` : spec;
}

const build = defineCommand({
  meta: {
    name: "build",
    description: "Build a Debian bookworm guest image from the host's apt sources, or one on a base: banger image build NAME --from BASE --packages a,b --run 'step' --copy HOST:GUEST --size 4G",
  },
  args: {
    image: { type: "positional", required: false, description: "Image name (default: default)" },
    name: { type: "string", description: "Image name (same as the positional)" },
    from: { type: "string", description: "Base image to build on (default: default when any of --packages/--run/--copy/--size is given)" },
    packages: { type: "string", description: "Debian packages to install, comma-separated (the host's apt sources)" },
    run: { type: "string", description: "A shell step run as root in a chroot of the image (repeatable, in order)" },
    copy: { type: "string", description: "HOST:GUEST file or dir copied into the image (repeatable)" },
    env: { type: "string", description: "NAME=value for the run steps (repeatable)" },
    size: { type: "string", description: "Grow the rootfs to this size (e.g. 4G)" },
    file: { type: "string", description: "A recipe file (banger.image.ts: export default defineImage({ name, from, packages, run, copy, env, size }))" },
    force: { type: "boolean", description: "Rebuild even if it exists" },
    ...jsonArg,
  },
  async run({ args }) {
    if (args.file) {
      const { loadImageFile } = await import("./image-file.ts");
      const r = await loadImageFile(args.file);
      const body = {
        name: args.image ?? args.name ?? r.name,
        force: !!args.force,
        from: r.from ?? "default",
        packages: r.packages,
        run: r.run,
        copy: r.copy?.map((c) => `${c.host}:${c.guest}`),
        env: r.env ? Object.entries(r.env).map(([k, v]) => `${k}=${v}`) : undefined,
        size: r.size,
      };
      const { data: img } = await streamCall("imageBuild", { body }, { json: !!args.json });
      out(img, !!args.json, () => `${img.built ? "built" : "cached"} image ${img.name} from ${args.file} (${mib(img.sizeBytes)}) in ${img.dir}`);
      return;
    }
    const name = args.image ?? args.name ?? "default";
    const derived = args.from !== undefined || args.packages !== undefined || args.run !== undefined || args.copy !== undefined || args.env !== undefined || args.size !== undefined;
    const body = derived
      ? {
          name,
          force: !!args.force,
          from: args.from,
          packages: (args.packages ?? "").split(",").map((p) => p.trim()).filter(Boolean),
          run: repeated("run"),
          copy: repeated("copy").map(resolveCopy),
          env: repeated("env"),
          size: args.size,
        }
      : { name, force: !!args.force };
    const { data: img } = await streamCall("imageBuild", { body }, { json: !!args.json });
    const from = img.chain.length > 1 ? ` on ${img.chain[img.chain.length - 2]!.name}` : "";
    out(img, !!args.json, () => `${img.built ? "built" : "cached"} image ${img.name}${from} (kernel ${img.kernelVersion || "?"}, ${mib(img.sizeBytes)}) in ${img.dir}`);
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
    const { data: s } = await streamCall("snapshotWarm", { params: { name: args.name }, body: { cpus: intArg(args.cpus, "--cpus", 1), memoryMiB: sizeArg(args.memory, "--memory"), driver: args.vmm } }, { json: !!args.json });
    out(s, !!args.json, () => `warm template ${s.vmName}@${s.name} for image ${s.spec.image} (${s.spec.cpus} cpu, ${s.spec.memoryMiB} MiB)`);
  },
});

const show = defineCommand({
  meta: { name: "show", description: "Show an image and its manifest" },
  args: { name: { type: "positional", required: true, description: "Image name" }, ...jsonArg },
  async run({ args }) {
    const client = await daemon();
    const shown = await client.call("imageShow", { params: { name: args.name } });
    const { snapshots } = await client.call("snapshotList", { query: {} });
    // a template of an image rebuilt or re-imported since is stale: starts no longer clone it
    const templates = snapshots
      .filter((s) => s.template && s.spec.image === shown.name)
      .map((s) => ({ snapshot: `${s.vmName}@${s.name}`, vmm: s.spec.driver, net: s.spec.net, storage: s.spec.storage, cpus: s.spec.cpus, memoryMiB: s.spec.memoryMiB, diskMiB: s.spec.diskMiB, workDiskMiB: s.spec.workDiskMiB, createdAt: s.createdAt, stale: s.template!.imageCreatedAt !== shown.createdAt }));
    const img = { ...shown, templates };
    out(img, !!args.json, () => {
      const lines = [`image ${img.name} (${img.source}, kernel ${img.kernelVersion || "?"}, ${mib(img.sizeBytes)}) in ${img.dir}`];
      lines.push(templates.length === 0 ? "warm-start templates: none" : "warm-start templates:");
      for (const t of templates) lines.push(`  ${t.snapshot}  ${t.vmm} ${t.net} ${t.storage} ${t.cpus} cpu ${t.memoryMiB} MiB  ${t.createdAt}${t.stale ? "  stale (image rebuilt since; not used)" : ""}`);
      if (img.chain.length > 1) {
        lines.push(`chain: ${img.chain.map((l) => l.name).join(" → ")}`);
        for (const l of img.chain.slice(1)) {
          lines.push(`  ${l.name} (from ${l.from}):`);
          if (l.packages.length) lines.push(`    packages: ${l.packages.join(", ")}`);
          for (const c of l.copy) lines.push(`    copy: ${c}`);
          for (const r of l.run) lines.push(`    run: ${r}`);
        }
      }
      lines.push(JSON.stringify(img.manifest, null, 2));
      return lines.join("\n");
    });
  },
});

const rm = defineCommand({
  meta: { name: "rm", description: "Remove an image (refused while a VM or a snapshot uses it; --force: even with snapshots, which then cannot be restored until an image of that name is there again)" },
  args: { name: { type: "positional", required: true, description: "Image name" }, force: { type: "boolean", description: "Remove it even while snapshots need it" }, ...jsonArg },
  async run({ args }) {
    const r = await (await daemon()).call("imageRemove", { params: { name: args.name }, query: { force: !!args.force } });
    out(r, !!args.json, () => `removed image ${r.deleted}`);
  },
});

const imp = defineCommand({
  meta: { name: "import", description: "Import your own kernel + ext4 rootfs (+ initrd), or an OCI image (layout dir, OCI archive or `docker save` archive): banger image import NAME --oci PATH" },
  args: {
    image: { type: "positional", required: false, description: "Image name (or --name)" },
    name: { type: "string", description: "Image name" },
    kernel: { type: "string", description: "Kernel (bzImage/vmlinuz) path" },
    rootfs: { type: "string", description: "ext4 root filesystem image path" },
    initrd: { type: "string", description: "initrd path" },
    oci: { type: "string", description: "OCI image layout dir, OCI archive or docker save archive (booted with the default image's kernel)" },
    base: { type: "string", description: "With --oci: the image whose kernel and initrd boot it (default: default)" },
    ...jsonArg,
  },
  async run({ args }) {
    const name = args.image ?? args.name;
    if (!name) throw new BangerError("E_USAGE", "image import needs a name: banger image import NAME --oci PATH (or --name N --kernel K --rootfs R)");
    if (args.oci) {
      const ignored = (["kernel", "rootfs", "initrd"] as const).filter((k) => args[k]);
      if (ignored.length) usage(`--oci takes its kernel and initrd from --base (default: default): drop ${ignored.map((k) => `--${k}`).join(", ")}`);
      const { data: img } = await streamCall("imageImportOci", { body: { name, path: resolve(args.oci), base: args.base } }, { json: !!args.json });
      out(img, !!args.json, () => `imported OCI image ${img.name} (${mib(img.sizeBytes)}) in ${img.dir}`);
      return;
    }
    if (!args.kernel || !args.rootfs) throw new BangerError("E_USAGE", "image import needs --oci PATH, or --kernel and --rootfs");
    const img = await (await daemon()).call("imageImport", {
      body: {
        name,
        kernel: resolve(args.kernel),
        rootfs: resolve(args.rootfs),
        initrd: args.initrd ? resolve(args.initrd) : undefined,
      },
    });
    // its VMs boot, but banger cannot reach them: its keys and agents come in through its initramfs (--json: in the answer)
    const warning = args.initrd ? undefined : `image ${img.name} has no initrd: its VMs get no SSH keys or agents from banger, so vm exec, ssh and sessions cannot reach them (import with --initrd, as \`banger image build\` makes one)`;
    out(warning ? { ...img, warning } : img, !!args.json, () => `imported image ${img.name}`);
    if (warning && !args.json) log().warn(warning);
  },
});

export default defineCommand({
  meta: { name: "image", description: "Build, import and manage guest images" },
  subCommands: { build, list, show, rm, import: imp, warm },
});
