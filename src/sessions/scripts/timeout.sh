# shellcheck shell=bash
# Given: TIMEOUT (seconds with three decimals, as secondsArg writes it), TIMEOUT_EXIT.
# Bash builtins and forks only, no extra programs: under TCG every exec of a
# program costs ~0.1-0.4 s.
#
# kill_tree PGID: SIGKILL every process of group PGID and every descendant of
# one (a child that moved to a group or session of its own is still found
# through its parent). Each is stopped as soon as it is found, so none can
# fork, respawn or report another's death while we look; then all die.
kill_tree() {
  local pgid=$1 pid f i=0
  local -a found=() kids=()
  kill -STOP -- "-$pgid" 2> /dev/null
  if [ ! -e "/proc/$pgid/task" ] || [ ! -e "/proc/$$/task/$$/children" ]; then
    # the leader is gone (or no children files): the group is all we can name
    kill -KILL -- "-$pgid" 2> /dev/null
    return 0
  fi
  # walk down from the leader: /proc reads for the tree only, not for every process
  found=("$pgid")
  while [ "$i" -lt "${#found[@]}" ]; do
    pid=${found[i]}
    i=$((i + 1))
    for f in "/proc/$pid/task/"*/children; do
      kids=()
      # no newline at its end: read "fails" but has read it
      read -r -a kids 2> /dev/null < "$f"
      if [ "${#kids[@]}" -gt 0 ]; then
        kill -STOP "${kids[@]}" 2> /dev/null
        found+=("${kids[@]}")
      fi
    done
  done
  kill -KILL -- "-$pgid" 2> /dev/null
  kill -KILL "${found[@]}" 2> /dev/null
  return 0
}

# wait_child PID: wait for PID and set STATUS to its exit status. A trapped
# signal (the session runner's USR1, whose trap sets TRAPPED) ends `wait`
# early with 128+n: then wait again, as bash keeps a reaped child's status
# for it (127 then means the first wait had it after all: the child died by a
# signal just as the trap fired). 2>/dev/null: not bash's "Killed" report of
# the child on the command's stderr.
wait_child() {
  local again
  TRAPPED=""
  wait "$1" 2> /dev/null
  STATUS=$?
  while [ -n "$TRAPPED" ] && [ "$STATUS" -gt 128 ]; do
    TRAPPED=""
    wait "$1" 2> /dev/null
    again=$?
    if [ "$again" = 127 ]; then break; fi
    STATUS=$again
  done
  return 0
}

# await_child PID: wait for PID (the leader of its own process group), at
# most TIMEOUT; then kill its whole tree. Sets STATUS: its exit status, or
# TIMEOUT_EXIT when the time ran out. (Not `wait -n`: bash may already have
# reaped a quick child and then calls it "no such job".)
#
# The watchdog leads a process group of its own: a signal for the command's
# group or ours (a forwarded Ctrl-C) is not for it. It wakes each second to
# see that we are still its parent: if we are killed (the exec agent's SIGKILL
# of our group when the exec is given up), nothing else would end the command,
# which runs in a group of its own, so it kills its tree then.
await_child() {
  local child=$1 us=$BASHPID dog
  set -m
  (
    # a pipe nobody writes to: read -t on it is a sleep without a sleep(1)
    exec {never}<> <(:)
    # in microseconds, by bash's own clock (no date(1) to start)
    end=$((${EPOCHREALTIME//[!0-9]/} + ${TIMEOUT%.*} * 1000000 + 10#${TIMEOUT#*.} * 1000))
    while left=$((end - ${EPOCHREALTIME//[!0-9]/})) && [ "$left" -gt 0 ]; do
      [ "$left" -lt 1000000 ] || left=1000000
      printf -v t '%d.%06d' $((left / 1000000)) $((left % 1000000))
      read -r -t "$t" -u "$never" _
      read -r _ _ _ parent _ < "/proc/$BASHPID/stat"
      if [ "$parent" != "$us" ]; then
        kill_tree "$child"
        exit 0
      fi
    done
    # fired: finish the kill even if told to stop now
    trap '' TERM
    kill_tree "$child"
    exit "$TIMEOUT_EXIT"
  ) 3>&- < /dev/null > /dev/null 2>&1 &
  dog=$!
  set +m
  wait_child "$child"
  kill -TERM "$dog" 2> /dev/null
  wait "$dog" 2> /dev/null
  # shellcheck disable=SC2034 # STATUS is for the including script
  if [ "$?" = "$TIMEOUT_EXIT" ]; then STATUS=$TIMEOUT_EXIT; fi
}
