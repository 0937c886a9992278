# shellcheck shell=bash
# Close a session's stdin: the runner (DIR/runner.pid, if it is still that
# runner) closes its writer of the FIFO on SIGUSR1, so the command reads EOF.
# Prints "closed", or "gone" when the runner is no more.
# Given: DIR.
: "${DIR:?}"
R=""
[ -s "$DIR/runner.pid" ] && read -r R < "$DIR/runner.pid"
ARG0="" ARG1=""
if [ -n "$R" ]; then
  { IFS= read -r -d '' ARG0; IFS= read -r -d '' ARG1; } < "/proc/$R/cmdline" 2> /dev/null
fi
if [ "$ARG0" = bash ] && [ "$ARG1" = "$DIR/run.sh" ] && kill -USR1 "$R" 2> /dev/null; then
  echo closed
else
  echo gone
fi
