/**
 * The Debian package each host program banger runs comes from: what a
 * "not found" error and `banger doctor` tell you to install. One table, so
 * the two never disagree. firecracker is not packaged (a release binary).
 */
export const TOOL_PACKAGES = {
  "qemu-system-x86_64": "qemu-system-x86",
  "qemu-img": "qemu-utils",
  mmdebstrap: "mmdebstrap",
  umoci: "umoci",
  skopeo: "skopeo",
  patchelf: "patchelf",
  debugfs: "e2fsprogs",
  unshare: "util-linux",
  "apt-get": "apt",
  "apt-cache": "apt",
  "dpkg-deb": "dpkg",
  "dpkg-query": "dpkg",
  cpio: "cpio",
  busybox: "busybox-static",
  dropbearkey: "dropbear-bin",
  "mkfs.ext4": "e2fsprogs",
  resize2fs: "e2fsprogs",
  e2fsck: "e2fsprogs",
  ip: "iproute2",
  iptables: "iptables",
  nft: "nftables",
  socat: "socat",
  ping: "iputils-ping",
  sysctl: "procps",
  losetup: "mount",
  blockdev: "util-linux",
  dmsetup: "dmsetup",
  git: "git",
  tar: "tar",
  gzip: "gzip",
  xz: "xz-utils",
  zstd: "zstd",
  lz4: "lz4",
  bzip2: "bzip2",
  sh: "dash",
  cp: "coreutils",
  stat: "coreutils",
  truncate: "coreutils",
  mkfifo: "coreutils",
  chroot: "coreutils",
  rm: "coreutils",
} as const satisfies Record<string, string>;

/** One line for a program that is not on PATH: what to install, and where to look further. */
export function missingToolMessage(tool: string): string {
  const pkg = (TOOL_PACKAGES as Record<string, string | undefined>)[tool.slice(tool.lastIndexOf("/") + 1)];
  return `${tool} not found: ${pkg ? `install ${pkg}` : "not on PATH"} (see \`banger doctor\`)`;
}

/** The last non-empty line a failed program printed (stderr first), capped: the one line an error shows. */
export function lastLine(stderr: string, stdout = ""): string {
  const lines = (stderr.trim() || stdout.trim()).split("\n").map((l) => l.trim()).filter(Boolean);
  const l = lines.at(-1) ?? "";
  return l.length > 300 ? `${l.slice(0, 300)}…` : l;
}
