#!/usr/bin/env bash
# Build dist/banger: one self-contained binary (CLI + daemon).
# `scripts/build.sh --hello OUT`: a compiled Bun hello-world built with the same compile flags, the baseline of bench row P1;
# `scripts/build.sh --compile SRC OUT`: any program so built.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-node-deps.sh
# --bytecode: precompiled JS cuts start-up from ~115 ms to ~40 ms per command (10 runs of `banger --version` each, same machine).
# --splitting: each lazy import() becomes its own chunk in the binary, loaded on first use; without it the
# whole bundle (daemon, ssh2, execa) is loaded by every command: `vm list` 43 ms -> see bench/results.md.
# --compile-jit-policy=8: JavaScriptCore's tier-up thresholds x8 at start, so a command's run-once code stays in the
# interpreter: no JIT worker thread is started for `vm list` (bench/results.md, P1). The daemon sets it back to 1 as it starts serving.
# --no-compile-autoload-*: a .env or bunfig.toml in the user's current directory must not change banger's environment (e.g. BANGER_HOME).
flags=(--compile --no-compile-autoload-dotenv --no-compile-autoload-bunfig --bytecode --compile-jit-policy=8 --format=esm --minify-syntax --minify-whitespace --sourcemap=none)
case "${1:-}" in
  --hello)
    out=${2:?usage: scripts/build.sh --hello OUT}
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo 'console.log("hi");' >"$tmp/hello.ts"
    ./node_modules/.bin/bun build "${flags[@]}" "$tmp/hello.ts" --outfile "$out" >&2
    exit 0 ;;
  --compile)
    # another program built as banger is (the bench's floor for P1: scripts/bench/floor.ts)
    ./node_modules/.bin/bun build "${flags[@]}" "${2:?usage: scripts/build.sh --compile SRC OUT}" --outfile "${3:?usage: scripts/build.sh --compile SRC OUT}" >&2
    exit 0 ;;
esac
# The build id is a hash of the sources, so the CLI/daemon handshake notices any rebuild with changes.
build_id=$(find src plugins package.json -type f \( -name '*.ts' -o -name '*.sh' -o -name '*.pl' -o -name '*.json' \) -print0 | sort -z | xargs -0 cat | sha256sum | cut -c1-12)
mkdir -p dist
build() {
  ./node_modules/.bin/bun build "${flags[@]}" --splitting \
    --define "BANGER_BUILD_ID=\"$build_id\"" "$@" \
    src/cli/entry.ts --outfile dist/banger.tmp >&2
}
build
# --bytecode-order: built again with the bytecode `vm list --json` runs laid out together at the front, as the first
# build recorded it answering a stand-in daemon (scripts/bytecode-order.ts): ~0.25 ms (~5% of a hello-world) off P1
# (bench/results.md). A failed recording leaves the first build, which works the same, only slower to start.
order=$(mktemp)
if ./node_modules/.bin/bun scripts/bytecode-order.ts dist/banger.tmp "$order"; then
  build --bytecode-order="$order"
else
  echo "build: no bytecode order recorded (above): dist/banger is laid out unordered" >&2
fi
rm -f "$order"
mv dist/banger.tmp dist/banger
echo "dist/banger ($build_id)" >&2
