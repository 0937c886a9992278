#!/usr/bin/env bash
# `npm run lint:shell`: shellcheck every shell script under src/, plugins/ and
# scripts/ — the guest scripts included. Each file names its shell (shebang or
# a `# shellcheck shell=` line).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck >/dev/null 2>&1; then
  echo "lint-shell: shellcheck is not installed (Debian package shellcheck; scripts/host-deps.sh installs it)" >&2
  exit 1
fi
mapfile -d '' files < <(find src plugins scripts -type f -name '*.sh' -print0 | sort -z)
shellcheck --external-sources -- "${files[@]}"
echo "lint-shell: ${#files[@]} scripts clean" >&2
