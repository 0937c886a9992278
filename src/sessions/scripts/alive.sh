# shellcheck shell=bash
# Shared head of the status, stop, signal and resize scripts: _alive reads
# DIR/pid into PID and START and succeeds only when that exact process (same
# /proc starttime, not a zombie) lives.
# Given: DIR, the state dir, when _alive runs (statuses.sh sets it per session).
_alive() {
  : "${DIR:?}"
  [ -s "$DIR/pid" ] || return 1
  read -r PID START < "$DIR/pid" || return 1
  # read, not $(cat): no program to start
  STAT=""
  IFS= read -r STAT 2> /dev/null < "/proc/$PID/stat"
  [ -n "$STAT" ] || return 1
  REST=${STAT##*) }
  # shellcheck disable=SC2086 # split on purpose: the fields after "(comm) "; $1 is the state, ${20} the starttime
  set -- $REST
  [ "$1" != Z ] && [ "${20}" = "$START" ]
}
