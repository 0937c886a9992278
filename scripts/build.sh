#!/usr/bin/env bash
# Build dist/banger: one self-contained binary (CLI + daemon).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-deps.sh
# The build id is a hash of the sources, so the CLI/daemon handshake notices any rebuild with changes.
build_id=$(find src plugins package.json -type f \( -name '*.ts' -o -name '*.sh' -o -name '*.json' \) -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-12)
mkdir -p dist
# --bytecode: precompiled JS cuts start-up from ~115 ms to ~40 ms per command (10 runs of `banger --version` each, same machine).
# --splitting: each lazy import() becomes its own chunk in the binary, loaded on first use; without it the
# whole bundle (daemon, ssh2, execa) is loaded by every command: `vm list` 43 ms -> see bench/results.md.
# --no-compile-autoload-*: a .env or bunfig.toml in the user's current directory must not change banger's environment (e.g. BANGER_HOME).
./node_modules/.bin/bun build --compile --no-compile-autoload-dotenv --no-compile-autoload-bunfig --bytecode --splitting --format=esm --minify-syntax --minify-whitespace --sourcemap=none \
  --define "BANGER_BUILD_ID=\"$build_id\"" \
  src/cli/entry.ts --outfile dist/banger.tmp >&2
mv dist/banger.tmp dist/banger
echo "dist/banger ($build_id)" >&2
