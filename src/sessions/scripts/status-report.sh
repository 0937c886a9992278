# shellcheck shell=bash
# Shared head of status.sh and statuses.sh (after alive.sh): _status sets
# STATUS to the session's status line, "running <pid> <starttime>", "exited
# <code> <mtime of exit_code>" or "missing" (never started), and fails when
# the process is gone but its exit is not recorded (yet: a runner records it
# a moment after the process ends; never: killed with its runner, or the
# guest rebooted).
# Given: DIR, the state dir, when _status runs.
# shellcheck disable=SC2034 # STATUS is the caller's to print
_status() {
  : "${DIR:?}"
  local exit=$DIR/exit_code code
  if [ -s "$exit" ]; then
    read -r code < "$exit"
    STATUS="exited $code $(stat -c %Y "$exit")"
  elif [ ! -s "$DIR/pid" ]; then
    STATUS=missing
  elif _alive; then
    STATUS="running $PID $START"
  else
    return 1
  fi
}
