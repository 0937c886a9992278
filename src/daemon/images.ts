import { join, resolve } from "node:path";
import { BangerError } from "../shared/errors.ts";
import type { HookEngine } from "../core/hooks.ts";
import { runOperation } from "../core/operation.ts";
import type { Logger } from "../core/plugin.ts";
import { tempPathFor } from "../shared/temps.ts";
import { VM_NAME_RE, VM_NAME_RULE, type ImageRecord } from "../shared/model.ts";
import type { FS, Host } from "../host/types.ts";
import type { Store } from "../store/store.ts";
import type { HandlersFor } from "./router.ts";

function validateImageName(name: unknown): string {
  if (typeof name !== "string" || !VM_NAME_RE.test(name)) {
    throw new BangerError("E_BAD_NAME", `invalid image name ${JSON.stringify(name)}: must match ${VM_NAME_RULE}`);
  }
  return name;
}

async function dirSize(fs: FS, dir: string): Promise<number> {
  let total = 0;
  for (const { name: f } of await fs.list(dir)) {
    // allocated blocks, not apparent size: rootfs files are sparse
    total += await fs.stat(join(dir, f)).then((s) => s?.allocated ?? 0, () => 0);
  }
  return total;
}

/** Images: built by the image:build hook (the image plugin) or imported from a user's kernel + rootfs. */
export class ImageService {
  constructor(
    private readonly store: Store,
    private readonly hooks: HookEngine,
    private readonly host: Host,
    private readonly imagesDir: string,
    /** Where undo failures of a build are logged. */
    private readonly log: Logger = { info() {}, warn() {}, error() {}, debug() {} },
  ) {}

  get(name: string): ImageRecord {
    const img = this.store.getImage(validateImageName(name));
    if (!img) throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${name}`);
    return img;
  }

  async manifest(img: ImageRecord): Promise<unknown> {
    const text = await this.host.fs.readText(join(img.dir, "manifest.json"));
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      return null;
    }
  }

  async build(nameIn: string, force: boolean, progress: (m: string) => void): Promise<{ image: ImageRecord; built: boolean }> {
    const name = validateImageName(nameIn);
    const existing = this.store.getImage(name);
    if (existing && !force && (await this.host.fs.exists(existing.rootfsPath))) {
      progress(`image ${name} is already built (use --force to rebuild)`);
      return { image: existing, built: false };
    }
    if (this.hooks.count("image:build") === 0) throw new BangerError("E_PLUGIN", "no plugin builds images (is the image plugin loaded?)");
    const final = join(this.imagesDir, name);
    const tmp = tempPathFor(final, "build");
    return runOperation({ name: `image build ${name}`, host: this.host, log: this.log, progress }, async (op) => {
      op.defer("build dir", () => this.host.fs.rmrf(tmp));
      await this.host.fs.mkdirp(tmp, 0o755);
      const result = { built: false };
      await this.hooks.run("image:build", { name, dir: tmp, force, progress, result, op });
      const img = await this.record(name, tmp, final, "built");
      await this.host.fs.rmrf(final);
      await this.host.fs.rename(tmp, final);
      this.store.upsertImage(img);
      return { image: img, built: true };
    });
  }

  /** Describe an image dir; paths point at where it will live after the rename. */
  private async record(name: string, dir: string, finalDir: string, source: ImageRecord["source"]): Promise<ImageRecord> {
    const has = (f: string) => this.host.fs.exists(join(dir, f));
    if (!(await has("vmlinuz")) || !(await has("rootfs.ext4"))) {
      throw new BangerError("E_INTERNAL", `image ${name}: build produced no vmlinuz/rootfs.ext4`);
    }
    let kernelVersion = "";
    const manifestText = await this.host.fs.readText(join(dir, "manifest.json"));
    if (manifestText) {
      try {
        kernelVersion = String((JSON.parse(manifestText) as { kernelVersion?: string }).kernelVersion ?? "");
      } catch {}
    }
    return {
      name,
      dir: finalDir,
      kernelPath: join(finalDir, "vmlinuz"),
      initrdPath: (await has("initrd.img")) ? join(finalDir, "initrd.img") : "",
      rootfsPath: join(finalDir, "rootfs.ext4"),
      kernelVersion,
      sizeBytes: await dirSize(this.host.fs, dir),
      createdAt: this.host.clock.now().toISOString(),
      source,
    };
  }

  async import(p: { name: string; kernel: string; rootfs: string; initrd?: string }): Promise<ImageRecord> {
    const name = validateImageName(p.name);
    if (this.store.getImage(name)) throw new BangerError("E_NAME_TAKEN", `image already exists: ${name} (remove it with \`banger image rm ${name}\`)`);
    for (const [what, path] of [["kernel", p.kernel], ["rootfs", p.rootfs], ["initrd", p.initrd]] as const) {
      if (path !== undefined && !(await this.host.fs.exists(path))) throw new BangerError("E_BAD_REQUEST", `${what} file not found: ${path}`);
    }
    const final = join(this.imagesDir, name);
    const tmp = tempPathFor(final, "import");
    await this.host.fs.mkdirp(tmp, 0o755);
    try {
      await this.host.fs.copyFile(resolve(p.kernel), join(tmp, "vmlinuz"));
      // sparse-aware copy: rootfs images are mostly holes
      await this.host.exec.run("cp", ["--sparse=always", "--reflink=auto", resolve(p.rootfs), join(tmp, "rootfs.ext4")]);
      if (p.initrd) await this.host.fs.copyFile(resolve(p.initrd), join(tmp, "initrd.img"));
      const manifest = { name, source: "imported", kernel: resolve(p.kernel), rootfs: resolve(p.rootfs), initrd: p.initrd ? resolve(p.initrd) : null, createdAt: this.host.clock.now().toISOString() };
      await this.host.fs.writeAtomic(join(tmp, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n", 0o644);
      const img = await this.record(name, tmp, final, "imported");
      await this.host.fs.rename(tmp, final);
      this.store.upsertImage(img);
      return img;
    } catch (e) {
      await this.host.fs.rmrf(tmp);
      throw e;
    }
  }

  async remove(name: string): Promise<void> {
    const img = this.get(name);
    const users = this.store.listVMs().filter((vm) => vm.spec.image === img.name);
    if (users.length) throw new BangerError("E_CONFLICT", `image ${img.name} is used by vm(s): ${users.map((v) => v.name).join(", ")}`);
    this.store.deleteImage(img.name);
    await this.host.fs.rmrf(img.dir);
  }

  /** The /v1/images routes. */
  handlers(): HandlersFor<"image"> {
    return {
      imageList: async () => ({ images: this.store.listImages() }),
      imageBuild: async ({ body, ndjson }) => {
        const imgName = validateImageName(body.name ?? "default");
        return ndjson(async (emit) => {
          const r = await this.build(imgName, body.force ?? false, emit.progress);
          return { type: "result", data: { ...r.image, built: r.built, manifest: await this.manifest(r.image) } };
        });
      },
      imageImport: async ({ body }) => this.import(body),
      imageShow: async ({ params }) => {
        const img = this.get(params.name);
        return { ...img, manifest: await this.manifest(img) };
      },
      imageRemove: async ({ params }) => {
        await this.remove(params.name);
        return { deleted: params.name };
      },
    };
  }
}
