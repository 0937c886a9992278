#!/usr/bin/env bash
# Install npm dependencies when they are missing or older than package.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/.bin/bun ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "installing npm dependencies…" >&2
  npm install --no-audit --no-fund --loglevel=error >&2
fi
