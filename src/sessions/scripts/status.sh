# shellcheck shell=bash
# Session status (after alive.sh; run with bash -s). One line:
# "running <pid> <starttime>", "exited <code> <mtime of exit_code>", "gone"
# (no process and no exit code: killed with its runner, or the guest
# rebooted), or "missing" (never started).
# Given: DIR, the state dir.
: "${DIR:?}"
EXIT=$DIR/exit_code
_report() {
  if [ -s "$EXIT" ]; then
    echo "exited $(cat "$EXIT") $(stat -c %Y "$EXIT")"
    return 0
  fi
  if [ ! -s "$DIR/pid" ]; then
    echo missing
    return 0
  fi
  if _alive; then
    echo "running $PID $START"
    return 0
  fi
  return 1
}
# A process that just ended needs a moment for its runner to record the exit.
i=0
while [ "$i" -lt 20 ]; do
  _report && exit 0
  sleep 0.1
  i=$((i + 1))
done
echo gone
