#!/usr/bin/env bash
# `npm run lint`: static checks, each failing the run. Types first (tsc over
# tsconfig.json), then eslint's type-aware promise rules (eslint.config.js) over
# src/, plugins/ and scripts/, the layer rules (.dependency-cruiser.cjs), then shellcheck over every .sh (scripts/lint-shell.sh), then perl -c of the guest's exec agent.
# More checks go here as further steps.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-deps.sh
# The shellcheck binary comes from Debian: installed here as root (CI runs lint before npm test), else lint-shell names the package
if [ "$(id -u)" = 0 ]; then bash scripts/host-deps.sh; fi

echo "lint: tsc -p ." >&2
./node_modules/.bin/tsc -p .

echo "lint: eslint src plugins scripts" >&2
./node_modules/.bin/eslint --max-warnings 0 src plugins scripts

echo "lint: layers (dependency-cruiser, .dependency-cruiser.cjs)" >&2
./node_modules/.bin/depcruise --config .dependency-cruiser.cjs src plugins

echo "lint: shellcheck" >&2
bash scripts/lint-shell.sh

# the guest's exec agent: perl compiles it (warnings fatal) as the guest will run it
echo "lint: perl -c plugins/image/exec-agent.pl" >&2
perl -Mstrict -Mwarnings=FATAL,all -c plugins/image/exec-agent.pl

echo "lint: ok" >&2
