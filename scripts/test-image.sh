#!/usr/bin/env bash
# Build (or reuse) the guest image real-VM tests boot, cached in .cache/test-image-home
# (BANGER_TEST_IMAGE_HOME overrides); prints the image dir on stdout. Needs root and dist/banger.
# Used by scripts/test.sh (e2e) and scripts/soak.ts.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
home="${BANGER_TEST_IMAGE_HOME:-$PWD/.cache/test-image-home}"
mkdir -p "$home"
echo "building the test guest image (cached in $home)…" >&2
# a cached image from an older recipe (e.g. before apt was in it) is rebuilt, not reused
want=$(sed -n 's/^export const RECIPE_VERSION = \([0-9]*\);/\1/p' plugins/image/build.ts)
have=$(sed -n 's/^ *"recipeVersion": \([0-9]*\).*/\1/p' "$home/images/default/manifest.json" 2>/dev/null)
force=()
if [ -n "$have" ] && [ -n "$want" ] && [ "$have" -lt "$want" ]; then
  echo "the cached test image is recipe $have, this tree builds recipe $want: rebuilding" >&2
  force=(--force)
fi
if ! BANGER_HOME="$home" ./dist/banger image build --name default "${force[@]}" >&2; then
  echo "image build failed" >&2
  exit 1
fi
# the E2B `base` template's image (test/e2e/e2b.test.ts imports it from here): derived from default,
# a cache hit while its recipe and default are unchanged; without it that test builds its own (~20 s)
# (rebuilt with default: derived from an older recipe it is refused)
if ! BANGER_HOME="$home" ./dist/banger e2b template build "${force[@]}" >&2; then
  echo "e2b base template build failed (test/e2e/e2b.test.ts will build its own)" >&2
fi
BANGER_HOME="$home" ./dist/banger daemon stop >/dev/null 2>&1 || true
echo "$home/images/default"
