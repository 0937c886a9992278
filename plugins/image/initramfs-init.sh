#!/bin/busybox sh
# busybox sh is an ash: checked as dash, its closest POSIX relative.
# shellcheck shell=dash
# banger initramfs /init (busybox sh). Loads the virtio drivers (they are
# modules in Debian's cloud kernel), mounts the root disk, hands the per-VM
# seed (a second cpio appended by the host) to the real root on a tmpfs at
# /run, and switch_roots into /sbin/banger-init.
# The build puts MODULES='<the insmod order>' before this script.
: "${MODULES:?}"

/bin/busybox mkdir -p /bin /proc /sys /dev /newroot
/bin/busybox --install -s /bin
export PATH=/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1

fail() {
  # A marker the host can match instead of waiting for an SSH timeout.
  echo "BANGER-BOOT-FAILED: $*"
  sync
  poweroff -f
  sleep 5
  echo o >/proc/sysrq-trigger
}

root=/dev/vda
init=/sbin/banger-init
rootflags=rw
# shellcheck disable=SC2013 # /proc/cmdline is one line: its words are what we want
for w in $(cat /proc/cmdline); do
  case "$w" in
    banger.root=*) root="${w#banger.root=}" ;;
    banger.init=*) init="${w#banger.init=}" ;;
    banger.ro=1) rootflags=ro ;;
  esac
done

# The kernel hands `module.param=value` from its command line only to built-in
# drivers; for a module, modprobe would pass them, busybox insmod does not.
# Firecracker describes its devices that way (virtio_mmio.device=4K@0x…:5).
modparams() {
  want=$(echo "$1" | tr - _)
  for w in $2; do
    case "$w" in "$want".?*=*) echo "${w#"$want".}" ;; esac
  done
}

cmdline=$(cat /proc/cmdline)
set -f # parameters are split into words, never globbed
for m in $MODULES; do
  # "File exists" (built in / already loaded) is fine; anything else is worth a line.
  # shellcheck disable=SC2046 # one word per parameter is intended
  err=$(insmod "/lib/modules/$m.ko" $(modparams "$m" "$cmdline") 2>&1) || case "$err" in *exists*) ;; *) echo "initramfs: insmod $m: $err" ;; esac
done
set +f

# virtio-blk probes asynchronously: wait (up to ~10 s) for the disk to appear.
i=0
while [ ! -b "$root" ]; do
  i=$((i + 1))
  [ "$i" -gt 200 ] && fail "root device $root did not appear"
  usleep 50000
done

mount -t ext4 -o "$rootflags" "$root" /newroot || fail "cannot mount $root"
[ -x "/newroot$init" ] || fail "no $init in the root filesystem"

# /run lives in RAM: the seed (keys, hostname) never touches the disk image.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run || fail "cannot mount /run"
if [ -d /banger-seed ]; then
  cp -a /banger-seed /newroot/run/banger-seed
  chmod 0700 /newroot/run/banger-seed
fi

mkdir -p /newroot/run/lock

# Hand the API filesystems over already mounted: busybox is static and cheap
# to exec under TCG, the rootfs's dynamic mount(8) is not. banger-init checks
# and mounts whatever is missing.
for d in proc sys dev; do
  mount --move "/$d" "/newroot/$d" || umount "/$d"
done
if [ -d /newroot/dev/pts ] || mkdir -p /newroot/dev/pts; then
  mount -t devpts -o mode=0620,gid=5,ptmxmode=0666,nosuid,noexec devpts /newroot/dev/pts
fi
mkdir -p /newroot/dev/shm && mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/dev/shm
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /newroot/tmp
[ -e /newroot/dev/fd ] || ln -s /proc/self/fd /newroot/dev/fd
# shellcheck disable=SC2093 # PID 1 must become the real init; the line after only runs if the exec returns
exec switch_root /newroot "$init"
fail "switch_root failed"
