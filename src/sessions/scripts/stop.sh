# shellcheck shell=bash
# Session stop (after alive.sh, before status.sh which reports the outcome):
# TERM the process group, KILL it once TENTHS tenths of a second passed.
# Given: TENTHS (0: KILL at once).
: "${TENTHS:?}"
if _alive; then
  if [ "$TENTHS" -gt 0 ]; then
    kill -TERM -- "-$PID" 2>/dev/null || kill -TERM "$PID" 2>/dev/null
    i=0
    while [ "$i" -lt "$TENTHS" ] && _alive; do
      sleep 0.1
      i=$((i + 1))
    done
  fi
  if _alive; then
    kill -KILL -- "-$PID" 2>/dev/null || kill -KILL "$PID" 2>/dev/null
    # KILL lands asynchronously: on a busy guest the process can still be there
    # when status.sh looks, which would report a killed session as running.
    i=0
    while [ "$i" -lt 50 ] && _alive; do
      sleep 0.1
      i=$((i + 1))
    done
  fi
fi
