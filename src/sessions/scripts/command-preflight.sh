# shellcheck shell=bash
# Session start, stage "command" (run with bash -s): one "missing command: X"
# line on stderr for each command that does not resolve; exit 1 if any did.
# Given: COMMANDS (array), CWD (may be empty).
: "${CWD?}"
check_command() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "missing command: $1" >&2
    missing=1
  fi
}
missing=0
# Relative paths such as ./agent resolve against the session's cwd.
if [ -n "$CWD" ]; then
  cd "$CWD" || exit 1
fi
for c in "${COMMANDS[@]}"; do
  check_command "$c"
done
exit "$missing"
