# shellcheck shell=bash
# Send SIG (a name: TERM, KILL, ...) to the session's process group, without
# waiting (after alive.sh). Prints "sent", or "gone" when nothing runs.
# Given: DIR, SIG.
: "${SIG:?}"
if _alive; then
  kill -s "$SIG" -- "-$PID" 2> /dev/null || kill -s "$SIG" "$PID" 2> /dev/null
  echo sent
else
  echo gone
fi
