#!/usr/bin/env bash
# `npm run lint`: static checks, each failing the run. Types first (tsc over
# tsconfig.json), then eslint's type-aware promise rules (eslint.config.js) over
# src/, plugins/ and scripts/. More checks go here as further steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-deps.sh

echo "lint: tsc -p ." >&2
./node_modules/.bin/tsc -p .

echo "lint: eslint src plugins scripts" >&2
./node_modules/.bin/eslint --max-warnings 0 src plugins scripts

echo "lint: ok" >&2
