#!/usr/bin/env bash
# On a machine with a usable /dev/kvm: boot VMs under QEMU+KVM through banger and
# record `banger vm run --rm -- true` (create + boot + SSH + command + delete)
# against raw qemu with the same argv, absolute p50 included. The boot section
# of `npm run bench`, refused up front where KVM is not usable, because TCG
# figures must never be reported as KVM ones.
# Usage: bash scripts/kvm-p50.sh [runs, default 10]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
bash scripts/ensure-node-deps.sh
[ "$(id -u)" = 0 ] && bash scripts/host-deps.sh
bash scripts/build.sh
doctor=$(./dist/banger doctor --json || true)
if ! printf '%s' "$doctor" | grep -q '"usable": true'; then
  echo "kvm-p50: /dev/kvm is not usable here, so there is nothing to measure:" >&2
  printf '%s\n' "$doctor" | grep -m1 '"reason"' >&2 || true
  exit 1
fi
BANGER_BENCH_BOOT_N="$runs" exec ./node_modules/.bin/bun scripts/bench/main.ts boot
