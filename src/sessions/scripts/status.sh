# shellcheck shell=bash
# Session status (after alive.sh and status-report.sh; run with bash -s). One
# line: "running <pid> <starttime>", "exited <code> <mtime of exit_code>",
# "gone" (no process and no exit code: killed with its runner, or the guest
# rebooted), or "missing" (never started).
# Given: DIR, the state dir.
: "${DIR:?}"
# A process that just ended needs a moment for its runner to record the exit.
i=0
while [ "$i" -lt 20 ]; do
  if _status; then
    echo "$STATUS"
    exit 0
  fi
  sleep 0.1
  i=$((i + 1))
done
echo gone
