#!/usr/bin/env bash
# Install npm dependencies when they are missing or package.json/package-lock.json changed since the last install.
# A content hash, not mtimes: a fresh checkout (a git worktree, a CI clone) is always newer than node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=node_modules/.banger-deps-sha256
want=$(cat package.json package-lock.json 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -x node_modules/.bin/bun ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing npm dependencies…" >&2
  npm install --no-audit --no-fund --loglevel=error >&2
  echo "$want" >"$stamp"
fi
