# shellcheck shell=sh
# Prints at most LIMIT bytes of LOG from byte START (1-based, as `tail -c +N`);
# nothing when the file is missing. Run with exec.
# Given: LOG, START, LIMIT.
: "${LOG:?}" "${START:?}" "${LIMIT:?}"
tail -c +"$START" "$LOG" 2>/dev/null | head -c "$LIMIT"
