#!/usr/bin/env bash
# The host-sensitive tests under every KVM shape this machine can show, each in
# a private mount namespace (nothing outside it changes; it goes when the run
# ends). Not in CI: needs root. Usage: scripts/test-hosts.sh [shape...]
#   as-is        the host as it is
#   no-kvm       /dev/kvm hidden (kvm_pvm, if loaded, stays visible: the
#                "module loaded, no device" host)
#   bare         /dev/kvm and /sys/module/kvm_pvm hidden (no virtualization)
#   looks-usable /sys/module/kvm_pvm hidden, /dev/kvm kept: the probe says
#                usable. Only the tests that boot nothing run here (a stock
#                kernel on a PVM /dev/kvm would hang), so this checks the
#                "usable KVM" expectations, not a real KVM boot.
#   looks-usable-fc  looks-usable with a stand-in `firecracker` (answers
#                --version only) first on PATH: Firecracker becomes the default.
# Expectations come from the tests' own looks at the host, so every shape
# must pass unchanged.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
[ "$(id -u)" = 0 ] || { echo "scripts/test-hosts.sh: needs root (mount namespaces)" >&2; exit 2; }
bash scripts/build.sh >/dev/null 2>&1 || { echo "scripts/test-hosts.sh: build failed (bash scripts/build.sh)" >&2; exit 1; }

export BANGER_TEST_IMAGE_DIR="${BANGER_TEST_IMAGE_DIR:-$PWD/.cache/test-image-home/images/default}"
[ -f "$BANGER_TEST_IMAGE_DIR/rootfs.ext4" ] || echo "no test image in $BANGER_TEST_IMAGE_DIR: the tests that need it skip (npm test builds it)" >&2
export BANGER_TAP_NETNS_ONLY=1
unset BANGER_ACCEL

PROBE_FILES=(test/unit/kvm.test.ts test/unit/doctor.test.ts test/integration/doctor.test.ts test/integration/firecracker-vmm.test.ts)
BOOT_FILES=(test/unit/vmlinux.test.ts test/integration/qemu-driver.test.ts test/e2e/vm.test.ts)

# Runs "$@" in a new mount namespace with $HIDE_DEV / $HIDE_PVM applied.
_in_ns() {
  # shellcheck disable=SC2016 # the script is expanded by the inner bash, in the new namespace
  unshare -m --propagation private bash -c '
    set -e
    if [ -n "${HIDE_DEV:-}" ]; then
      # a tmpfs copy of /dev without kvm; pts, shm and mqueue stay the real mounts
      d=$(mktemp -d /tmp/banger-dev.XXXXXX)
      mount -t tmpfs -o mode=755 banger-dev "$d"
      cp -a --one-file-system /dev/. "$d"/ 2>/dev/null || true
      rm -f "$d/kvm"
      for m in pts shm mqueue hugepages; do
        if mountpoint -q "/dev/$m"; then mkdir -p "$d/$m"; mount --rbind "/dev/$m" "$d/$m"; fi
      done
      mount --move "$d" /dev
      rmdir "$d"
    fi
    if [ -n "${HIDE_PVM:-}" ]; then
      # /sys/module with every module but kvm_pvm, as empty dirs: the probe only asks whether it exists
      s=$(mktemp -d /tmp/banger-sysmod.XXXXXX)
      mount -t tmpfs -o mode=755 banger-sysmod "$s"
      for m in /sys/module/*; do [ "${m##*/}" = kvm_pvm ] || mkdir "$s/${m##*/}"; done
      mount --move "$s" /sys/module
      rmdir "$s"
    fi
    echo "  /dev/kvm: $([ -e /dev/kvm ] && echo present || echo absent); /sys/module/kvm_pvm: $([ -e /sys/module/kvm_pvm ] && echo present || echo absent)"
    exec "$@"
  ' bash "$@"
}

declare -a summary=()
_run() {
  local shape=$1; shift
  echo "== $shape"
  local log t0 t1 pass fail skip
  log=$(mktemp)
  t0=$(date +%s)
  _in_ns ./node_modules/.bin/bun test --timeout 120000 "$@" 2>&1 | tee "$log" | grep -E '^\(fail\)|^skip:|^  /dev/kvm|error:' || true
  t1=$(date +%s)
  pass=$(grep -Eo '^ *[0-9]+ pass' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  fail=$(grep -Eo '^ *[0-9]+ fail' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  skip=$(grep -Eo '^ *[0-9]+ skip' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
  rm -f "$log"
  summary+=("$(printf '%-16s %3s pass %3s fail %3s skip %4ss' "$shape" "$pass" "$fail" "$skip" "$((t1 - t0))")")
  [ "$fail" = 0 ]
}

shapes=("$@")
[ ${#shapes[@]} -eq 0 ] && shapes=(as-is no-kvm bare looks-usable looks-usable-fc)
status=0
for shape in "${shapes[@]}"; do
  case $shape in
    as-is) HIDE_DEV="" HIDE_PVM="" _run "$shape" "${PROBE_FILES[@]}" "${BOOT_FILES[@]}" || status=1 ;;
    no-kvm) HIDE_DEV=1 HIDE_PVM="" _run "$shape" "${PROBE_FILES[@]}" "${BOOT_FILES[@]}" || status=1 ;;
    bare) HIDE_DEV=1 HIDE_PVM=1 _run "$shape" "${PROBE_FILES[@]}" "${BOOT_FILES[@]}" || status=1 ;;
    looks-usable | looks-usable-fc)
      if ! [ -e /dev/kvm ] || ! [ -e /sys/module/kvm_pvm ]; then
        summary+=("$(printf '%-16s skipped: needs a PVM /dev/kvm to disguise' "$shape")")
      elif [ "$shape" = looks-usable ]; then
        HIDE_DEV="" HIDE_PVM=1 _run "$shape" "${PROBE_FILES[@]}" || status=1
      else
        fc=$(mktemp -d /tmp/banger-fc.XXXXXX)
        # shellcheck disable=SC2016 # a literal stand-in script
        printf '#!/bin/sh\n[ "$1" = --version ] && echo "Firecracker v1.16.1 (stand-in)"\nexit 0\n' >"$fc/firecracker"
        chmod 755 "$fc" "$fc/firecracker"
        PATH="$fc:$PATH" HIDE_DEV="" HIDE_PVM=1 _run "$shape" "${PROBE_FILES[@]}" || status=1
        rm -rf "$fc"
      fi
      ;;
    *) echo "unknown shape $shape (as-is, no-kvm, bare, looks-usable, looks-usable-fc)" >&2; exit 2 ;;
  esac
done
echo
printf '%s\n' "${summary[@]}"
exit $status
