import { createHash } from "node:crypto";
import { join, resolve } from "node:path";
import { BangerError, errorMessage } from "../shared/errors.ts";
import type { HookEngine } from "../core/hooks.ts";
import { runOperation, type Operation } from "../core/operation.ts";
import type { Logger } from "../core/plugin.ts";
import { bzImageRelease } from "../shared/kernel-version.ts";
import { tempPathFor } from "../shared/temps.ts";
import { VM_NAME_RE, VM_NAME_RULE, type ImageRecord, type VMRecord } from "../shared/model.ts";
import type { FS, Host } from "../host/types.ts";
import { removeUnlessMounted } from "../host/mounts.ts";
import type { Store } from "../store/store.ts";
import { checkRecipe, parseCopy, recipeKey, type CheckedRecipe, type ImageChainLink, type ImageRecipe } from "../shared/image-recipe.ts";
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

/** Part of a derived image's cache key: bump when the key's meaning changes. */
const DERIVE_KEY_VERSION = 1;

/** recipe.json of a derived image: its base, the recipe and the cache key's hash. */
interface RecipeLink {
  from: string;
  recipeHash: string;
  recipe: CheckedRecipe;
  /** `vm commit`: the VM whose disk this is. */
  committedFrom?: string;
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
    /** The VMs `vm commit` reads (the engine). */
    private readonly vms?: { whileStopped<T>(idOrName: string, fn: (vm: VMRecord) => Promise<T>): Promise<T> },
    /** An image's warm-start templates (snapshots): a cache of it, which goes when it goes or is rebuilt. */
    private readonly templates?: { removeOf(image: string, keepFor?: string): Promise<string[]> },
  ) {}

  /** Remove an image's templates (`keepFor`: but those of the image made at that time); a failure is logged, never the image operation's. */
  private async dropTemplates(image: string, keepFor?: string): Promise<void> {
    if (!this.templates) return;
    await this.templates.removeOf(image, keepFor).then(
      (gone) => gone.length && this.log.info(`image ${image}: warm-start template${gone.length > 1 ? "s" : ""} ${gone.join(", ")} removed (${keepFor ? "made of the image before it was rebuilt" : "the image was removed"})`),
      (e: unknown) => this.log.warn(`image ${image}: its warm-start templates were not removed: ${errorMessage(e)}`),
    );
  }

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

  async build(nameIn: string, force: boolean, progress: (m: string) => void, signal?: AbortSignal): Promise<{ image: ImageRecord; built: boolean }> {
    const name = validateImageName(nameIn);
    const existing = this.store.getImage(name);
    if (existing && !force && (await this.host.fs.exists(existing.rootfsPath))) {
      progress(`image ${name} is already built (use --force to rebuild)`);
      return { image: existing, built: false };
    }
    if (this.hooks.count("image:build") === 0) throw new BangerError("E_PLUGIN", "no plugin builds images (is the image plugin loaded?)");
    const image = await this.stage({ name, kind: "build", label: `image build ${name}`, source: "built", replace: true, progress, signal }, async (tmp, op) => {
      await this.hooks.run("image:build", { name, dir: tmp, force, progress, result: { built: false }, op });
    });
    return { image, built: true };
  }

  /**
   * An image on a base (`--from`): a cache hit when an image of that name was
   * built from the same recipe on the same base (same key), else built by the
   * image:build hook with the recipe, and its key and chain link kept in
   * recipe.json next to the manifest.
   */
  async derive(input: ImageRecipe, force: boolean, progress: (m: string) => void, signal?: AbortSignal): Promise<{ image: ImageRecord; built: boolean }> {
    const recipe = checkRecipe(input);
    const { name } = recipe;
    const base = this.store.getImage(recipe.from);
    if (!base) throw new BangerError("E_IMAGE_NOT_FOUND", `base image not found: ${recipe.from} (see \`banger image list\`)`);
    const key = recipeKey(recipe, await this.identity(base), await this.copyDigest(recipe), DERIVE_KEY_VERSION);
    const hash = createHash("sha256").update(key).digest("hex");
    const existing = this.store.getImage(name);
    if (existing && !force) {
      const link = await this.recipeOf(existing);
      if (link?.recipeHash === hash && (await this.host.fs.exists(existing.rootfsPath))) {
        progress(`image ${name} is up to date (same recipe on the same ${recipe.from})`);
        return { image: existing, built: false };
      }
      throw new BangerError("E_NAME_TAKEN", `image already exists: ${name} (built from another recipe or base; --force rebuilds it, \`banger image rm ${name}\` removes it)`);
    }
    if (this.hooks.count("image:build") === 0) throw new BangerError("E_PLUGIN", "no plugin builds images (is the image plugin loaded?)");
    const users = existing ? this.store.listVMs().filter((vm) => vm.spec.image === name) : [];
    if (users.length) throw new BangerError("E_CONFLICT", `image ${name} is used by vm(s): ${users.map((v) => v.name).join(", ")}`);
    const image = await this.stage({ name, kind: "build", label: `image build ${name}`, source: "derived", replace: true, progress, signal }, async (tmp, op) => {
      const result = { built: false };
      await this.hooks.run("image:build", { name, dir: tmp, force, progress, result, op, recipe, base });
      if (!result.built) throw new BangerError("E_PLUGIN", `no plugin built image ${name} from ${base.name}`);
      const link: RecipeLink = { from: base.name, recipeHash: hash, recipe };
      await this.host.fs.writeAtomic(join(tmp, "recipe.json"), JSON.stringify(link, null, 2) + "\n", 0o644);
    });
    return { image, built: true };
  }

  /**
   * `vm commit VM IMAGE`: the stopped VM's system disk (written by its
   * storage provider's vm:commit) becomes an image with the kernel and initrd
   * of the VM's image, scrubbed by the image:build hook of what belonged to
   * that VM (keys, histories, logs).
   */
  async commit(vmName: string, nameIn: string, progress: (m: string) => void, signal?: AbortSignal): Promise<ImageRecord> {
    const name = validateImageName(nameIn);
    if (!this.vms) throw new BangerError("E_INTERNAL", "vm commit: no VM engine");
    if (this.store.getImage(name)) throw new BangerError("E_NAME_TAKEN", `image already exists: ${name} (remove it with \`banger image rm ${name}\`)`);
    return this.vms.whileStopped(vmName, async (vm) => {
      const base = this.store.getImage(vm.spec.image);
      if (!base) throw new BangerError("E_IMAGE_NOT_FOUND", `vm ${vm.name}: its image ${vm.spec.image} is gone (the kernel comes from it)`);
      if (this.hooks.count("vm:commit") === 0) throw new BangerError("E_PLUGIN", "no plugin can commit a VM's disk (is the storage plugin loaded?)");
      return this.stage({ name, kind: "build", label: `vm commit ${vm.name} ${name}`, vm, source: "committed", replace: false, progress, signal }, async (tmp, op) => {
        await this.hooks.run("vm:commit", { vm, out: join(tmp, "rootfs.ext4"), progress, op });
        if (!(await this.host.fs.exists(join(tmp, "rootfs.ext4")))) throw new BangerError("E_PLUGIN", `no storage provider wrote vm ${vm.name}'s disk (storage: ${vm.spec.storage})`);
        const recipe: CheckedRecipe = { name, from: base.name, packages: [], run: [], copy: [], env: {}, size: "" };
        const result = { built: false };
        await this.hooks.run("image:build", { name, dir: tmp, force: false, progress, result, op, recipe, base, commitOf: vm.name });
        if (!result.built) throw new BangerError("E_PLUGIN", `no plugin finished image ${name} from vm ${vm.name}`);
        const link: RecipeLink = { from: base.name, recipeHash: "", recipe, committedFrom: vm.name };
        await this.host.fs.writeAtomic(join(tmp, "recipe.json"), JSON.stringify(link, null, 2) + "\n", 0o644);
      });
    });
  }

  /** `image import NAME --oci PATH`: built by the image:build hook from the OCI image, with `baseName`'s kernel and initrd. */
  async importOci(nameIn: string, path: string, baseName: string, progress: (m: string) => void, signal?: AbortSignal): Promise<ImageRecord> {
    const name = validateImageName(nameIn);
    if (this.store.getImage(name)) throw new BangerError("E_NAME_TAKEN", `image already exists: ${name} (remove it with \`banger image rm ${name}\`)`);
    const base = this.store.getImage(validateImageName(baseName));
    if (!base) throw new BangerError("E_IMAGE_NOT_FOUND", `image not found: ${baseName} (its kernel and initrd boot the OCI image; build it with \`banger image build\`)`);
    if (!base.initrdPath) throw new BangerError("E_BAD_REQUEST", `image ${base.name} has no banger initramfs: an OCI image boots with one`);
    if (!(await this.host.fs.exists(path))) throw new BangerError("E_BAD_REQUEST", `OCI input not found: ${path}`);
    if (this.hooks.count("image:build") === 0) throw new BangerError("E_PLUGIN", "no plugin builds images (is the image plugin loaded?)");
    return this.stage({ name, kind: "import", label: `image import ${name}`, source: "oci", replace: false, progress, signal }, async (tmp, op) => {
      const result = { built: false };
      await this.hooks.run("image:build", { name, dir: tmp, force: false, progress, result, op, base, oci: path });
      if (!result.built) throw new BangerError("E_PLUGIN", `no plugin imported the OCI image ${path}`);
    });
  }

  /**
   * Make image `name` in a temp dir next to its final one (`fill` writes it; the dir goes on any
   * failure), then put it in place and record it. `replace`: a rebuild, the old dir goes; else a
   * name taken while this ran is refused.
   */
  private stage(o: { name: string; kind: "build" | "import"; label: string; vm?: VMRecord; source: ImageRecord["source"]; replace: boolean; progress: (m: string) => void; signal?: AbortSignal }, fill: (tmp: string, op: Operation) => Promise<void>): Promise<ImageRecord> {
    const final = join(this.imagesDir, o.name);
    const tmp = tempPathFor(final, o.kind);
    return runOperation({ name: o.label, ...(o.vm ? { vm: o.vm } : {}), host: this.host, log: this.log, progress: o.progress, ...(o.signal ? { signal: o.signal } : {}) }, async (op) => {
      op.defer(`${o.kind} dir`, () => removeUnlessMounted(this.host.fs, tmp));
      await this.host.fs.mkdirp(tmp, 0o755);
      await fill(tmp, op);
      const img = await this.record(o.name, tmp, final, o.source);
      if (o.replace) await this.host.fs.rmrf(final);
      else if (this.store.getImage(o.name)) throw new BangerError("E_NAME_TAKEN", `image already exists: ${o.name}`);
      await this.host.fs.rename(tmp, final);
      this.store.upsertImage(img);
      // a rebuilt image's templates are stale (never cloned again): their disk space comes back now
      if (o.replace) await this.dropTemplates(o.name, img.createdAt);
      return img;
    });
  }

  /** What a derived image's cache key holds of its base: its manifest and chain link (a rebuilt base has a new manifest). */
  private async identity(base: ImageRecord): Promise<string> {
    const h = createHash("sha256");
    for (const f of ["manifest.json", "recipe.json"]) h.update(`${f}\0${(await this.host.fs.readText(join(base.dir, f))) ?? ""}\0`);
    return `${base.name}@${base.createdAt}:${h.digest("hex")}`;
  }

  /** A digest of every file --copy reads, so an edited source is a cache miss. */
  private async copyDigest(recipe: CheckedRecipe): Promise<string> {
    const h = createHash("sha256");
    for (const c of recipe.copy) {
      const st = await this.host.fs.stat(c.host);
      if (!st || (st.type !== "file" && st.type !== "dir")) throw new BangerError("E_BAD_REQUEST", `copy source not found: ${c.host}`);
      const files = st.type === "dir" ? (await this.host.fs.listTree(c.host)).sort() : [""];
      for (const rel of files) {
        const p = rel ? join(c.host, rel) : c.host;
        const fst = await this.host.fs.lstat(p);
        h.update(`${c.host}\0${rel}\0${fst?.type}\0${fst?.mode}\0`);
        if (fst?.type === "file") for await (const chunk of this.host.fs.readStream(p)) h.update(chunk);
      }
    }
    return h.digest("hex");
  }

  private async recipeOf(img: ImageRecord): Promise<RecipeLink | null> {
    const text = await this.host.fs.readText(join(img.dir, "recipe.json"));
    try {
      return text ? (JSON.parse(text) as RecipeLink) : null;
    } catch {
      return null;
    }
  }

  /** The image and its bases, oldest base first: what each added. */
  async chain(img: ImageRecord): Promise<ImageChainLink[]> {
    const out: ImageChainLink[] = [];
    const seen = new Set<string>();
    for (let cur: ImageRecord | null = img; cur && !seen.has(cur.name); ) {
      seen.add(cur.name);
      const link = await this.recipeOf(cur);
      out.unshift({ name: cur.name, source: cur.source, from: link?.from ?? null, committedFrom: link?.committedFrom ?? null, packages: link?.recipe.packages ?? [], run: link?.recipe.run ?? [], copy: (link?.recipe.copy ?? []).map((c) => `${c.host}:${c.guest}`), recipeHash: link?.recipeHash ?? null });
      cur = link ? this.store.getImage(link.from) : null;
    }
    return out;
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
      // a built image's manifest names its kernel's release; an imported bzImage says its own in its header
      const kernelVersion = bzImageRelease(await this.host.fs.readRange(join(tmp, "vmlinuz"), 0, 65536));
      const manifest = { name, source: "imported", kernel: resolve(p.kernel), rootfs: resolve(p.rootfs), initrd: p.initrd ? resolve(p.initrd) : null, kernelVersion, createdAt: this.host.clock.now().toISOString() };
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

  async remove(name: string, o: { force?: boolean } = {}): Promise<void> {
    const img = this.get(name);
    const users = this.store.listVMs().filter((vm) => vm.spec.image === img.name);
    if (users.length) throw new BangerError("E_CONFLICT", `image ${img.name} is used by vm(s): ${users.map((v) => v.name).join(", ")}`);
    // a snapshot is restored on its image's kernel and initrd: removing the image would leave it unusable (its
    // warm templates are a cache, which an image imported again under the name shows stale)
    const kept = this.store.snapshots.list().filter((s) => s.spec.image === img.name && !s.template).map((s) => `${s.vmName}@${s.name}`);
    if (kept.length && !o.force) throw new BangerError("E_CONFLICT", `image ${img.name} is used by snapshot(s): ${kept.join(", ")} (remove them first, or image rm --force: they then wait for an image of that name)`);
    this.store.deleteImage(img.name);
    await this.host.fs.rmrf(img.dir);
    await this.dropTemplates(img.name);
  }

  /** The /v1/images routes. */
  handlers(): HandlersFor<"image"> {
    return {
      imageList: async () => ({ images: this.store.listImages() }),
      imageBuild: async ({ body, ndjson }) => {
        const imgName = validateImageName(body.name ?? "default");
        const derived = body.from !== undefined || !!(body.packages?.length || body.run?.length || body.copy?.length || body.env?.length || body.size);
        const recipe: ImageRecipe | null = derived ? recipeFromBody(imgName, body) : null;
        if (recipe) checkRecipe(recipe); // bad input is a 400, not an error line in a stream
        return ndjson(async (emit) => {
          const r = recipe ? await this.derive(recipe, body.force ?? false, emit.progress, emit.signal) : await this.build(imgName, body.force ?? false, emit.progress, emit.signal);
          return { type: "result", data: { ...r.image, built: r.built, manifest: await this.manifest(r.image), chain: await this.chain(r.image) } };
        });
      },
      imageImport: async ({ body }) => this.import(body),
      imageImportOci: async ({ body, ndjson }) => {
        validateImageName(body.name);
        return ndjson(async (emit) => {
          const img = await this.importOci(body.name, resolve(body.path), body.base ?? "default", emit.progress, emit.signal);
          return { type: "result", data: { ...img, manifest: await this.manifest(img) } };
        });
      },
      imageCommit: async ({ body, ndjson }) => {
        validateImageName(body.name);
        return ndjson(async (emit) => {
          const img = await this.commit(body.vm, body.name, emit.progress, emit.signal);
          return { type: "result", data: { ...img, manifest: await this.manifest(img), chain: await this.chain(img) } };
        });
      },
      imageShow: async ({ params }) => {
        const img = this.get(params.name);
        return { ...img, manifest: await this.manifest(img), chain: await this.chain(img) };
      },
      imageRemove: async ({ params, query }) => {
        await this.remove(params.name, { force: query.force });
        return { deleted: params.name };
      },
    };
  }
}

function recipeFromBody(name: string, body: { from?: string; packages?: string[]; run?: string[]; copy?: string[]; env?: string[]; size?: string }): ImageRecipe {
  const env: Record<string, string> = {};
  for (const kv of body.env ?? []) {
    const i = kv.indexOf("=");
    if (i <= 0) throw new BangerError("E_BAD_REQUEST", `bad env ${JSON.stringify(kv)}: want NAME=value`);
    env[kv.slice(0, i)] = kv.slice(i + 1);
  }
  return { name, from: body.from, packages: body.packages, run: body.run, copy: (body.copy ?? []).map(parseCopy), env, size: body.size };
}
