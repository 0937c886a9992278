#!/usr/bin/env bash
# Regenerate src/daemon/e2b/gen from src/daemon/e2b/proto (buf + protoc-gen-es, both npm devDependencies).
# The generated files are committed: building banger needs neither tool.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-deps.sh
rm -rf src/daemon/e2b/gen
./node_modules/.bin/buf generate
