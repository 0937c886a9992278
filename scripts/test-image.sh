#!/usr/bin/env bash
# Build (or reuse) the guest image real-VM tests boot, cached in .cache/test-image-home
# (BANGER_TEST_IMAGE_HOME overrides); prints the image dir on stdout. Needs root and dist/banger.
# Used by scripts/test.sh (e2e) and scripts/soak.ts.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
home="${BANGER_TEST_IMAGE_HOME:-$PWD/.cache/test-image-home}"
mkdir -p "$home"
echo "building the test guest image (cached in $home)…" >&2
if ! BANGER_HOME="$home" ./dist/banger image build --name default >&2; then
  echo "image build failed" >&2
  exit 1
fi
BANGER_HOME="$home" ./dist/banger daemon stop >/dev/null 2>&1 || true
echo "$home/images/default"
