# shellcheck shell=sh
# Live attach output, run with exec: follows LOG from byte START (1-based, as
# `tail -c +N`). With a PID (0: none), ends once that process is gone; in any
# case ends when our stdin closes, so a dropped SSH channel never leaves a
# tail behind.
# Given: LOG, START, PID.
: "${LOG:?}" "${START:?}" "${PID:?}"
if [ "$PID" -gt 0 ]; then set -- --pid="$PID"; else set --; fi
tail -c +"$START" -F -s 0.2 "$@" "$LOG" 2>/dev/null &
T=$!
( cat > /dev/null; kill "$T" 2>/dev/null ) <&0 > /dev/null 2>&1 &
wait "$T"
