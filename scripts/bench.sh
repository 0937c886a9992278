#!/usr/bin/env bash
# `npm run bench [--quick] [sections]`: install what is missing, build dist/banger, then
# run scripts/bench/main.ts (sections in scripts/bench/sections.ts; default all). Writes
# bench/results.json + bench/results.md (--quick: bench/results-quick.*, test driver only, < 60 s).
# Env: BANGER_BENCH_IMAGE_DIR=dir with vmlinuz/rootfs.ext4/initrd.img to import
# (else one is built), BANGER_BENCH_IMAGE_BUILD=1 to time a full image build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-deps.sh
bash scripts/build.sh
exec ./node_modules/.bin/bun scripts/bench/main.ts "$@"
