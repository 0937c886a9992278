#!/bin/sh
# Install the Debian packages banger needs on the host (idempotent).
# Quiet when nothing is missing. As root: installs them; otherwise prints the
# command to run and exits 1.
set -eu

PACKAGES="qemu-system-x86 qemu-utils mmdebstrap cpio busybox-static dropbear-bin e2fsprogs openssh-client openssh-server zstd iptables iputils-ping lz4 shellcheck socat nftables umoci skopeo patchelf inotify-tools"
export DEBIAN_FRONTEND=noninteractive

missing=""
for p in $PACKAGES; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing="$missing $p"
done
missing=${missing# }
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "banger: missing host packages: $missing" >&2
  echo "sudo apt-get install -y --no-install-recommends $missing"
  exit 1
fi

echo "banger: installing $missing" >&2
# shellcheck disable=SC2086 # word splitting of the package list is intended
if ! apt-get install -y --no-install-recommends $missing; then
  # Stale package lists are the usual cause; refresh once and retry.
  apt-get update
  apt-get install -y --no-install-recommends $missing
fi
