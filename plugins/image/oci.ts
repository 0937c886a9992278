import { join } from "node:path";
import { BangerError, shellQuote } from "../../src/plugin-api.ts";
import type { Exec, FS, ImageRecord } from "../../src/plugin-api.ts";
// Embedded as text so the compiled binary carries it.
import INIT_SH from "./init.sh" with { type: "text" };
import EXEC_AGENT_PL from "./exec-agent.pl" with { type: "text" };

/** Where banger's own boot pieces live in an imported image: one dir of ours, nothing of the image's overwritten. */
export const OCI_BANGER_DIR = "/.banger";
/** The init the initramfs hands over to (kernel arg banger.init=). */
export const OCI_INIT = `${OCI_BANGER_DIR}/init`;
/** The exec agent (plugins/image/exec-agent.pl), in place of a built image's /usr/lib/banger one. */
export const OCI_EXEC_AGENT = `${OCI_BANGER_DIR}/exec-agent.pl`;
/** Host programs carried in, with their own loader and libraries (patchelf): they run on an image with no or another libc. */
const _CARRIED = [
  ["/bin/bash", "bash"],
  ["/usr/sbin/dropbear", "dropbear"],
  // iproute2's: init.sh configures the network with one `ip -batch`, which busybox's ip lacks
  ["/usr/bin/ip", "ip"],
  // sessions start under `setsid nohup bash`, and Debian's busybox has no nohup
  ["/usr/bin/nohup", "nohup"],
  ["/usr/bin/dropbearkey", "dropbearkey"],
] as const;
/** busybox-static applets init.sh and the login wrapper use when the image lacks them (linked even if --list fails). */
const _APPLETS = ["sh", "mount", "umount", "mkdir", "ln", "sleep", "kill", "sync", "cp", "dd", "cat", "rm", "chmod", "printf", "echo", "mountpoint", "reboot", "poweroff"];
const _LOADER = "ld-linux-x86-64.so.2";

export interface OciDefaults {
  /** The image's Env ("NAME=value"): exported for every `vm exec`. */
  env: string[];
  workdir: string;
  user: string;
  entrypoint: string[];
  cmd: string[];
}

export interface OciManifest {
  name: string;
  source: "oci";
  from: string;
  kernelVersion: string;
  oci: OciDefaults & { input: string; format: string };
  /** The initramfs hands over to this instead of /sbin/banger-init. */
  init: string;
  createdAt: string;
}

export interface ImportOciOptions {
  name: string;
  /** An OCI image layout dir, an OCI archive or a `docker save` archive. */
  input: string;
  /** Where kernel and initrd come from. */
  base: ImageRecord;
  dir: string;
  exec: Exec;
  fs: FS;
  progress: (m: string) => void;
  now?: () => Date;
  /** A static busybox (default: busybox-static's). */
  busybox?: string;
}

/** skopeo's name for what the input is, found from what it holds (one line of error when it is none of them). */
export async function ociSource(exec: Exec, fs: FS, input: string): Promise<{ ref: string; format: string }> {
  const st = await fs.stat(input);
  if (!st) throw new BangerError("E_BAD_REQUEST", `OCI input not found: ${input}`);
  if (st.type === "dir") {
    if (!(await fs.exists(join(input, "oci-layout"))) || !(await fs.exists(join(input, "index.json")))) {
      throw new BangerError("E_BAD_REQUEST", `${input} is not an OCI image layout (no oci-layout and index.json)`);
    }
    return { ref: `oci:${input}`, format: "oci-layout" };
  }
  const list = await exec.run("tar", ["-tf", input], { check: false });
  if (list.exitCode !== 0) throw new BangerError("E_BAD_REQUEST", `${input} is not an OCI image layout or a docker save archive (not a tar archive)`);
  const names = new Set(list.stdout.split("\n").map((n) => n.replace(/^\.\//, "")));
  if (names.has("oci-layout") && names.has("index.json")) return { ref: `oci-archive:${input}`, format: "oci-archive" };
  if (names.has("manifest.json")) return { ref: `docker-archive:${input}`, format: "docker-archive" };
  throw new BangerError("E_BAD_REQUEST", `${input} is not an OCI image layout or a docker save archive (no oci-layout or manifest.json in it)`);
}

/**
 * Import an OCI image: skopeo copies it (layout, OCI archive or docker save
 * archive) into a layout of ours, umoci applies its layers in order with
 * whiteouts, then banger adds what it needs to boot and be reached under
 * /.banger: init.sh run by a carried bash, dropbear and dropbearkey (with their own loader and
 * libraries), busybox applets, and a login shell that exports the image's Env and cds to its
 * WorkingDir. Kernel and initrd are the base image's.
 */
export async function importOci(opts: ImportOciOptions): Promise<OciManifest> {
  const { exec, fs, progress, dir } = opts;
  const work = join(dir, ".build");
  await fs.mkdirp(work, 0o755);
  try {
    const src = await ociSource(exec, fs, opts.input);
    progress(`oci: reading ${src.format} ${opts.input}`);
    const layout = join(work, "layout");
    await _tool(exec, "skopeo", ["--insecure-policy", "copy", "--quiet", src.ref, `oci:${layout}:banger`], "cannot read the image");
    const config = await _imageConfig(fs, layout);
    progress("oci: applying layers (umoci)");
    const bundle = join(work, "bundle");
    await _tool(exec, "umoci", ["unpack", "--image", `${layout}:banger`, bundle], "cannot unpack the layers");
    const root = join(bundle, "rootfs");

    progress("oci: adding banger's init, dropbear and busybox under /.banger");
    await _addBangerDir(opts, root, config);

    await _addModules(opts, root);

    for (const f of ["vmlinuz", "vmlinux", "initrd.img"]) {
      const p = join(opts.base.dir, f);
      if (await fs.exists(p)) await exec.run("cp", ["--reflink=auto", p, join(dir, f)]);
    }
    const used = Number((await exec.run("du", ["-s", "-B1", "--apparent-size", root])).stdout.split(/\s/)[0]) || 0;
    // room to work in: half again what the image holds, at least 512 MiB
    const size = Math.max(512 * 2 ** 20, Math.ceil((used * 1.5 + 256 * 2 ** 20) / 2 ** 20) * 2 ** 20);
    progress(`rootfs: mkfs.ext4 -d (${Math.round(size / 2 ** 20)} MiB, sparse)`);
    const rootfs = join(dir, "rootfs.ext4");
    await exec.run("truncate", ["-s", String(size), rootfs]);
    await exec.run("mkfs.ext4", ["-q", "-F", "-L", "banger-root", "-m", "0", "-d", root, rootfs]);

    const manifest: OciManifest = {
      name: opts.name,
      source: "oci",
      from: opts.base.name,
      kernelVersion: opts.base.kernelVersion,
      oci: { ...config, input: opts.input, format: src.format },
      init: OCI_INIT,
      createdAt: (opts.now?.() ?? new Date()).toISOString(),
    };
    await fs.writeFile(join(dir, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`, 0o644);
    progress(`done: ${opts.name} (${src.format}, workdir ${config.workdir || "/"}, ${config.env.length} env)`);
    return manifest;
  } finally {
    // umoci's rootfs holds root-owned, possibly read-only trees: rm as root
    await exec.run("rm", ["-rf", "--one-file-system", work], { check: false });
  }
}

async function _tool(exec: Exec, cmd: string, args: string[], what: string): Promise<void> {
  const r = await exec.run(cmd, args, { check: false });
  if (r.exitCode === 0) return;
  const why = `${r.stderr}\n${r.stdout}`.split("\n").map((l) => l.trim()).filter(Boolean).at(-1) ?? `exit ${r.exitCode}`;
  throw new BangerError("E_BAD_REQUEST", `${cmd}: ${what}: ${why}`);
}

/** The image config (Env, WorkingDir, User, Entrypoint, Cmd) of the one image in our layout. */
async function _imageConfig(fs: FS, layout: string): Promise<OciDefaults> {
  const blob = async (digest: string) => {
    const [alg, hex] = digest.split(":");
    const text = await fs.readText(join(layout, "blobs", alg ?? "", hex ?? ""));
    if (!text) throw new BangerError("E_BAD_REQUEST", `OCI layout: missing blob ${digest}`);
    return JSON.parse(text) as Record<string, unknown>;
  };
  const index = JSON.parse((await fs.readText(join(layout, "index.json"))) ?? "{}") as { manifests?: { digest: string }[] };
  const m = index.manifests?.[0];
  if (!m) throw new BangerError("E_BAD_REQUEST", "OCI layout: no image in index.json");
  const manifest = (await blob(m.digest)) as { config?: { digest: string } };
  const config = manifest.config ? ((await blob(manifest.config.digest)).config as Record<string, unknown> | undefined) : undefined;
  const strs = (v: unknown) => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
  return {
    env: strs(config?.Env).filter((e) => /^[A-Za-z_][A-Za-z0-9_]*=/.test(e)),
    workdir: typeof config?.WorkingDir === "string" ? config.WorkingDir : "",
    user: typeof config?.User === "string" ? config.User : "",
    entrypoint: strs(config?.Entrypoint),
    cmd: strs(config?.Cmd),
  };
}

/** The lines of the login wrapper's env file: `export NAME='value'`, then the workdir. */
export function envFile(d: OciDefaults): string {
  const lines = d.env.map((kv) => {
    const i = kv.indexOf("=");
    return `export ${kv.slice(0, i)}=${shellQuote(kv.slice(i + 1))}`;
  });
  // ours last: bash (sessions run under it) and busybox where the image has neither, the image's own tools first
  lines.push(`export PATH="\${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}:${OCI_BANGER_DIR}/bin"`);
  lines.push(`BANGER_WORKDIR=${shellQuote(d.workdir || "/root")}`);
  return lines.join("\n") + "\n";
}

async function _addBangerDir(opts: ImportOciOptions, root: string, config: OciDefaults): Promise<void> {
  const { exec, fs } = opts;
  const top = join(root, OCI_BANGER_DIR);
  // ours alone: whatever the image had there (a symlink could point anywhere on the host) goes
  if (await fs.lstat(top)) await exec.run("rm", ["-rf", top]);
  // top-level names only: a deeper path could cross a symlink of the image's and land on the host
  for (const d of ["etc", "root", "tmp", "proc", "sys", "dev", "run"]) {
    const p = join(root, d);
    const st = await fs.lstat(p);
    if (st && st.type !== "dir") {
      if (d === "tmp") continue; // a symlinked /tmp is the image's business (init mounts a tmpfs on it)
      throw new BangerError("E_BAD_REQUEST", `the image's /${d} is not a directory: it cannot boot as a VM`);
    }
    if (!st) await fs.mkdirp(p, d === "root" ? 0o700 : 0o755);
  }
  const bin = join(top, "bin");
  const lib = join(top, "lib");
  await fs.mkdirp(bin, 0o755);
  await fs.mkdirp(lib, 0o755);
  const busybox = opts.busybox ?? ((await fs.exists("/usr/bin/busybox")) ? "/usr/bin/busybox" : "/bin/busybox");
  await exec.run("cp", [busybox, join(bin, "busybox")]);
  // every applet (sessions need mkfifo, setsid, nohup…); /.banger/bin comes last on PATH, so the image's own tools win
  const listed = (await exec.run(join(bin, "busybox"), ["--list"], { check: false })).stdout.split("\n").filter((a) => /^[a-z0-9_.[-]+$/.test(a) && a !== "busybox");
  const applets = [...new Set([..._APPLETS, ...listed])].filter((a) => !_CARRIED.some(([, to]) => to === a)); // ours, not busybox's
  await exec.run("sh", ["-c", 'cd "$1" && shift && for a in "$@"; do ln -sf busybox "$a"; done', "sh", bin, ...applets]);
  // each carried program: the binary plus every library ldd resolves, loader included, found through RPATH
  const libs = new Set<string>();
  for (const [from, to] of _CARRIED) {
    await exec.run("cp", [from, join(bin, to)]);
    for (const m of (await exec.run("ldd", [from])).stdout.matchAll(/(\/\S+\.so[.\d]*)/g)) libs.add(m[1]!);
  }
  for (const l of libs) await exec.run("cp", ["-L", l, join(lib, l.split("/").pop()!)]);
  if (!(await fs.exists(join(lib, _LOADER)))) throw new BangerError("E_MISSING_TOOL", `no ${_LOADER} among the carried libraries`);
  for (const [, to] of _CARRIED) {
    await exec.run("patchelf", ["--set-interpreter", `${OCI_BANGER_DIR}/lib/${_LOADER}`, "--force-rpath", "--set-rpath", `${OCI_BANGER_DIR}/lib`, join(bin, to)]);
  }
  // init.sh as it is, run by the carried bash, with our applets after the image's own tools
  // and the exec agent among our pieces: init.sh starts it when the image has a perl of its own
  const init = INIT_SH.replace(/^#!.*\n/, `#!${OCI_BANGER_DIR}/bin/bash\n`)
    .replace(/^export PATH=(.*)$/m, `export PATH=$1:${OCI_BANGER_DIR}/bin`)
    .replace(/^EXEC_AGENT=.*$/m, `EXEC_AGENT=${OCI_EXEC_AGENT}`);
  await fs.writeFile(join(root, OCI_EXEC_AGENT.slice(1)), EXEC_AGENT_PL, 0o644);
  await fs.writeFile(join(root, OCI_INIT.slice(1)), init, 0o755);
  await fs.chmod(join(root, OCI_INIT.slice(1)), 0o755);
  await fs.writeFile(join(top, "env"), envFile(config), 0o644);
  // the login shell: the image's env and workdir for every `vm exec`, then the image's own shell
  await fs.writeFile(
    join(top, "shell"),
    `#!${OCI_BANGER_DIR}/bin/sh
. ${OCI_BANGER_DIR}/env
cd "$BANGER_WORKDIR" 2>/dev/null || cd /
for s in /bin/bash /bin/sh ${OCI_BANGER_DIR}/bin/sh; do
  if [ -x "$s" ]; then exec "$s" "$@"; fi
done
`,
    0o755,
  );
  await fs.chmod(join(top, "shell"), 0o755);
  await _rootLogin(fs, root);
}

/**
 * The base kernel's modules (modprobe in the guest), read out of the base's
 * rootfs with debugfs into the image's /lib/modules: through a relative
 * /lib → usr/lib link (merged /usr), never through an absolute one (that
 * would be the host's /usr/lib here).
 */
async function _addModules(opts: ImportOciOptions, root: string): Promise<void> {
  const { exec, fs, progress, base } = opts;
  const listed = (await exec.run("debugfs", ["-R", "ls -p /usr/lib/modules", base.rootfsPath], { check: false })).stdout;
  const versions = [...listed.matchAll(/^\/\d+\/040\d+\/\d+\/\d+\/([^/]+)\/\/$/gm)].map((m) => m[1]!).filter((v) => v !== "." && v !== "..");
  const kver = base.kernelVersion && versions.includes(base.kernelVersion) ? base.kernelVersion : versions.length === 1 ? versions[0]! : "";
  if (!kver || !/^[A-Za-z0-9._+-]+$/.test(kver)) {
    progress(`oci: no kernel modules found in ${base.name}'s rootfs: none added`);
    return;
  }
  let libDir = join(root, "lib");
  const lib = await fs.lstat(libDir);
  if (lib?.type === "symlink") {
    const to = (await exec.run("readlink", [libDir])).stdout.trim();
    if (to !== "usr/lib" || (await fs.lstat(join(root, "usr/lib")))?.type !== "dir" || (await fs.lstat(join(root, "usr")))?.type !== "dir") {
      progress(`oci: /lib links to ${to}: kernel modules not added`);
      return;
    }
    libDir = join(root, "usr/lib");
  } else if (lib && lib.type !== "dir") return;
  const modules = join(libDir, "modules");
  const st = await fs.lstat(modules);
  if (st && st.type !== "dir") return;
  await fs.mkdirp(modules, 0o755);
  progress(`oci: kernel modules ${kver} from ${base.name}`);
  await exec.run("debugfs", ["-R", `rdump "/usr/lib/modules/${kver}" "${modules}"`, base.rootfsPath]);
}

/** root logs in with the wrapper shell (listed in /etc/shells, which dropbear checks). */
async function _rootLogin(fs: FS, root: string): Promise<void> {
  const shell = `${OCI_BANGER_DIR}/shell`;
  const passwdPath = join(root, "etc/passwd");
  const passwd = (await fs.readText(passwdPath)) ?? "";
  const lines = passwd.split("\n").filter((l) => l !== "");
  const i = lines.findIndex((l) => l.startsWith("root:"));
  if (i >= 0) {
    const f = lines[i]!.split(":");
    while (f.length < 7) f.push("");
    f[1] = f[1] === "" ? "x" : f[1]!;
    f[5] = f[5] || "/root";
    f[6] = shell;
    lines[i] = f.join(":");
  } else lines.unshift(`root:x:0:0:root:/root:${shell}`);
  await _replaceFile(fs, passwdPath, lines.join("\n") + "\n");
  // no password login for root: keys only (a "*" in shadow, never a usable hash)
  const shadowPath = join(root, "etc/shadow");
  const shadow = await fs.readText(shadowPath);
  if (shadow !== null) await _replaceFile(fs, shadowPath, /^root:/m.test(shadow) ? shadow.replace(/^root:[^:]*:/m, "root:*:") : `root:*:19000:0:99999:7:::\n${shadow}`);
  const shells = (await fs.readText(join(root, "etc/shells"))) ?? "";
  if (!shells.split("\n").includes(shell)) await _replaceFile(fs, join(root, "etc/shells"), `${shells}${shells && !shells.endsWith("\n") ? "\n" : ""}${shell}\n`);
}

/** Write over a file of the image without following a symlink it may be (it could point at the host). */
async function _replaceFile(fs: FS, path: string, text: string): Promise<void> {
  const st = await fs.lstat(path);
  if (st && st.type !== "file") await fs.rmrf(path);
  await fs.writeFile(path, text, st?.mode ?? 0o644);
}
