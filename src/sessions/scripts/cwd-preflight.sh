# shellcheck shell=bash
# Session start, stage "cwd" (run with bash -s): fails with exit 1 and
# "missing cwd: DIR" on stderr unless DIR is a directory.
# Given: DIR, the session's cwd.
: "${DIR:?}"
if [ ! -d "$DIR" ]; then
  echo "missing cwd: $DIR" >&2
  exit 1
fi
