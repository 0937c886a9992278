# shellcheck shell=bash
# Close a session's stdin: the runner (DIR/runner.pid, if it is still that
# runner) closes its writer of the FIFO on SIGUSR1, so the command reads EOF.
# Prints "closed", or "gone" when the runner is no more.
# Given: DIR.
: "${DIR:?}"
R="" RSTART=""
[ -s "$DIR/runner.pid" ] && read -r R RSTART < "$DIR/runner.pid"
SAME=""
if [ -n "$R" ] && [ -n "$RSTART" ]; then
  # "<pid> <starttime>": the same process if it started then (the runner may be a fork of start-follow's bash, not `bash run.sh`)
  STAT=""
  IFS= read -r STAT 2> /dev/null < "/proc/$R/stat"
  REST=${STAT##*) }
  # shellcheck disable=SC2086 # split on purpose: the fields after "(comm) "; ${20} is the starttime
  [ -n "$STAT" ] && set -- $REST && [ "${20}" = "$RSTART" ] && SAME=1
elif [ -n "$R" ]; then
  # a runner of an older banger wrote its pid alone: it is `bash DIR/run.sh`
  ARG0="" ARG1=""
  { IFS= read -r -d '' ARG0; IFS= read -r -d '' ARG1; } < "/proc/$R/cmdline" 2> /dev/null
  [ "$ARG0" = bash ] && [ "$ARG1" = "$DIR/run.sh" ] && SAME=1
fi
if [ -n "$SAME" ] && kill -USR1 "$R" 2> /dev/null; then
  echo closed
else
  echo gone
fi
