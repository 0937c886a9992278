# shellcheck shell=bash
# shellcheck disable=SC2016 # single-quoted scripts and formats are for the chroot's shell and dpkg-query
# banger: customise a copy of a base image's rootfs in a chroot. Run under
# `unshare --mount --pid --fork`: every mount below is private to this
# process and vanishes with it (a crash leaves no mount and, with the loop's
# autoclear, no loop device), and anything a step starts in the background
# dies with it. Markers ("$MARK …", MARK a token of this build's, so a
# step's output cannot pass for one) tell the caller which stage runs.
# Given: WORK, ROOTFS, MARK, DEBS (a dir of .debs or ""), and bash arrays ENV
# ("NAME=value"), COPY_HOST/COPY_GUEST, RUN.
set -euo pipefail
: "${WORK:?}" "${ROOTFS:?}" "${MARK:?}"
mnt="$WORK/mnt"
mkdir -p "$mnt"
mount -o loop "$ROOTFS" "$mnt"
for d in proc dev run; do
  # a symlink here would resolve on the host: refuse it rather than mount over a host dir
  if [ -L "$mnt/$d" ] || [ ! -d "$mnt/$d" ]; then echo "$MARK failed layout 1 /$d is not a directory in the base image"; exit 3; fi
done
mount -t proc proc "$mnt/proc"
# a /dev of its own, never the host's: a step's `rm -rf /dev/*` or a stray file lands in this tmpfs; the
# few nodes a build uses are the host's bind-mounted one by one (a bind-mounted node cannot be removed)
mount -t tmpfs -o mode=0755,nosuid tmpfs "$mnt/dev"
for n in null zero full random urandom tty; do
  touch "$mnt/dev/$n"
  mount --bind "/dev/$n" "$mnt/dev/$n"
done
mkdir -m 1777 "$mnt/dev/shm"
mkdir "$mnt/dev/pts"
ln -s /proc/self/fd "$mnt/dev/fd"
ln -s /proc/self/fd/0 "$mnt/dev/stdin"
ln -s /proc/self/fd/1 "$mnt/dev/stdout"
ln -s /proc/self/fd/2 "$mnt/dev/stderr"
mount -t tmpfs -o mode=0755 tmpfs "$mnt/run"
stage="$mnt/run/banger"
mkdir -p "$stage"

in_root() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "${ENV[@]}" chroot "$mnt" "$@"
}

if [ -n "$DEBS" ]; then
  echo "$MARK stage packages"
  mkdir -p "$stage/debs"
  mount --bind "$DEBS" "$stage/debs"
  set +e
  # dpkg takes the .debs in name order and refuses one whose Pre-Depends comes later in that order
  # (python3 → python3-minimal → python3.11-minimal): each pass installs what the last one configured
  # the way for; --skip-same-version leaves what is already in alone. A chain is at most a few deep.
  for pass in 1 2 3 4; do
    in_root /bin/sh -c 'dpkg --force-confold --skip-same-version -i /run/banger/debs/*.deb'
    rc=$?
    if [ "$rc" -eq 0 ]; then break; fi
    echo "dpkg pass $pass left packages unconfigured (pre-dependencies later in the list): again"
  done
  set -e
  if [ "$rc" -ne 0 ]; then echo "$MARK failed packages $rc"; exit 3; fi
  umount "$stage/debs"
fi

i=0
for h in "${COPY_HOST[@]}"; do
  g="${COPY_GUEST[$i]}"
  i=$((i + 1))
  echo "$MARK stage copy $i"
  # copied inside the chroot so the image's own symlinks resolve in the image, never on the host;
  # plain cp -R (busybox has no --preserve): root-owned, modes kept but for the umask
  if [ -d "$h" ]; then
    mkdir -p "$stage/copy"
    mount --bind "$h" "$stage/copy"
    set +e
    in_root /bin/sh -c 'mkdir -p "$1" && cp -R /run/banger/copy/. "$1"' sh "$g"
  else
    touch "$stage/copy-file"
    mount --bind "$h" "$stage/copy-file"
    set +e
    # as docker COPY: a target ending in / or naming a dir gets the file under its own name
    in_root /bin/sh -c 'case "$1" in
      */) mkdir -p "$1" && cp /run/banger/copy-file "$1$2" ;;
      *) if [ -d "$1" ]; then cp /run/banger/copy-file "$1/$2"; else mkdir -p "$(dirname "$1")" && cp /run/banger/copy-file "$1"; fi ;;
    esac' sh "$g" "$(basename -- "$h")"
  fi
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then echo "$MARK failed copy $i $rc"; exit 3; fi
  umount "$stage/copy" 2>/dev/null || umount "$stage/copy-file"
done

i=0
for step in "${RUN[@]}"; do
  i=$((i + 1))
  echo "$MARK stage run $i"
  set +e
  in_root /bin/sh -c "$step" </dev/null
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then echo "$MARK failed run $i $rc"; exit 3; fi
done

if [ -x "$mnt/usr/bin/dpkg-query" ]; then
  in_root dpkg-query -W -f='${Package}=${Version}\n' >"$WORK/packages.txt"
fi
# What a step left running (a daemon a postinst started) would keep the mounts busy. We are
# pid 1 of this namespace, so -1 reaches every other process in it and nothing outside.
kill -KILL -1 2>/dev/null || true
for _ in 1 2 3 4 5 6 7 8 9 10; do
  mountpoint -q "$mnt" || break
  umount -R "$mnt" 2>/dev/null || sleep 0.2
done
if mountpoint -q "$mnt"; then umount -R "$mnt"; fi
echo "$MARK stage done"
