#!/usr/bin/env bash
# `npm test`: install what is missing, build, run every test, end with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
bash scripts/ensure-node-deps.sh || exit 1
if [ "$(id -u)" = 0 ]; then
  bash scripts/host-deps.sh || exit 1
else
  bash scripts/host-deps.sh || echo "host packages missing and not root: tests that need them will skip" >&2
fi
bash scripts/build.sh || exit 1

# e2e tests boot real VMs: build (or reuse) the guest image once for the whole run.
if [ -z "${BANGER_SKIP_E2E:-}" ] && [ "$(id -u)" = 0 ]; then
  export BANGER_E2E=1
  export BANGER_TEST_IMAGE_HOME="${BANGER_TEST_IMAGE_HOME:-$PWD/.cache/test-image-home}"
  BANGER_TEST_IMAGE_DIR=$(bash scripts/test-image.sh) || exit 1
  export BANGER_TEST_IMAGE_DIR
fi

# a tap VM outside a test's own network namespace must fail, never touch this machine's bridge, NAT or /etc/hosts
export BANGER_TAP_NETNS_ONLY=1

files=("$@")
[ ${#files[@]} -eq 0 ] && files=(test/unit test/integration test/e2e)
log=$(mktemp)
./node_modules/.bin/bun test --timeout 120000 "${files[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
pass=$(grep -Eo '^ *[0-9]+ pass' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
fail=$(grep -Eo '^ *[0-9]+ fail' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
skip=$(grep -Eo '^ *[0-9]+ skip' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
rm -f "$log"
[ "$status" -ne 0 ] && [ "$fail" = 0 ] && fail=1  # bun failed outside a test (load error): never report green
[ "$skip" != 0 ] && echo "($skip skipped)"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ] && [ "$status" = 0 ]
