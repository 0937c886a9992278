#!/usr/bin/env bash
# `npm run demo`: install what is missing, build banger and a guest image, boot a VM, run a command in it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-deps.sh
bash scripts/host-deps.sh
bash scripts/build.sh
echo "== banger doctor" >&2
./dist/banger doctor || true
echo "== banger image build (cached after the first run; about a minute the first time)" >&2
./dist/banger image build
echo "== banger vm run --name demo --rm -- uname -a" >&2
start=$(date +%s%3N)
./dist/banger vm run --name demo --rm -- uname -a
ms=$(( $(date +%s%3N) - start ))
printf '== done: create + boot + command + delete took %d.%03d s (QEMU %s)\n' $((ms / 1000)) $((ms % 1000)) "$(./dist/banger doctor --json | grep -q '"usable": true' && echo KVM || echo 'TCG: no usable KVM here')" >&2
