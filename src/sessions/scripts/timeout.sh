# shellcheck shell=bash
# Given: TIMEOUT (seconds for sleep(1), may be fractional), TIMEOUT_EXIT.
#
# kill_tree SID: SIGKILL every process of session SID and every descendant of
# one (a child that called setsid itself is still found by its parent).
# Bash builtins and /proc only: under TCG every extra process costs ~50 ms.
kill_tree() {
  local sid=$1 f line rest pid
  for _ in 1 2 3; do # again: a process forked while we looked is caught next time
    local -A parent=() doomed=()
    for f in /proc/[0-9]*/stat; do
      read -r line 2> /dev/null < "$f" || continue # gone already
      pid=${f#/proc/}
      pid=${pid%/stat}
      rest=${line##*) }
      # shellcheck disable=SC2086 # split on purpose: state ppid pgrp session …
      set -- $rest
      if [ "$1" = Z ]; then continue; fi # dead already, only not reaped yet
      parent[$pid]=$2
      if [ "$4" = "$sid" ]; then doomed[$pid]=1; fi
    done
    local grew=1
    while [ "$grew" = 1 ]; do
      grew=0
      for pid in "${!parent[@]}"; do
        if [ -z "${doomed[$pid]:-}" ] && [ -n "${doomed[${parent[$pid]}]:-}" ]; then
          doomed[$pid]=1
          grew=1
        fi
      done
    done
    unset "doomed[$$]"
    if [ "${#doomed[@]}" -eq 0 ]; then return 0; fi
    # freeze them all first: none sees another die (no "Killed" reports, no respawns) before it dies too
    kill -STOP "${!doomed[@]}" 2> /dev/null
    kill -KILL "${!doomed[@]}" 2> /dev/null
  done
}

# await_child PID: wait for PID (the leader of its own session), at most
# TIMEOUT; then kill its whole tree. Sets STATUS: its exit status, or
# TIMEOUT_EXIT when the time ran out. (Not `wait -n`: bash may already have
# reaped a quick child and then calls it "no such job".)
await_child() {
  local child=$1 dog
  _watchdog() {
    local nap=""
    trap 'kill -KILL "$nap" 2> /dev/null; exit 0' TERM
    # shellcheck disable=SC2217 # no fd of ours: the channel must close when the command is done
    sleep "$TIMEOUT" < /dev/null > /dev/null 2>&1 3>&- &
    nap=$!
    wait "$nap"
    trap '' TERM # fired: finish the kill even if told to stop now
    kill_tree "$child"
    exit "$TIMEOUT_EXIT"
  }
  _watchdog &
  dog=$!
  # 2>/dev/null: not bash's "Killed" report of the child on the command's stderr
  wait "$child" 2> /dev/null
  # shellcheck disable=SC2034 # STATUS is for the including script
  STATUS=$?
  kill -TERM "$dog" 2> /dev/null
  wait "$dog"
  # shellcheck disable=SC2034 # STATUS is for the including script
  if [ "$?" = "$TIMEOUT_EXIT" ]; then STATUS=$TIMEOUT_EXIT; fi
}
