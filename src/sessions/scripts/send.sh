# shellcheck shell=sh
# One send (SendScript), run with exec: the payload arrives on stdin and is
# uploaded to UPLOAD first (so a connection dropped mid-transfer never leaves
# half a message in the FIFO), then copied into the FIFO and removed. dd opens
# the FIFO itself, inside `timeout`, so a pipe with no reader fails after
# TIMEOUT seconds instead of hanging.
# Given: UPLOAD, PIPE, TIMEOUT (whole seconds), EXPECTED (the payload's size
# in bytes; empty: unchecked), and the exit codes NO_PIPE_EXIT, SHORT_EXIT,
# TIMEOUT_EXIT (what `timeout` exits with).
: "${UPLOAD:?}" "${PIPE:?}" "${TIMEOUT:?}" "${EXPECTED?}" "${NO_PIPE_EXIT:?}" "${SHORT_EXIT:?}" "${TIMEOUT_EXIT:?}"
if [ ! -p "$PIPE" ]; then
  echo "no stdin pipe at $PIPE" >&2
  exit "$NO_PIPE_EXIT"
fi
umask 077
cat > "$UPLOAD" || { rc=$?; rm -f "$UPLOAD"; exit "$rc"; }
# A daemon killed mid-upload closes the channel, which reads as EOF: without
# this check the first half of a payload would go into the FIFO.
if [ -n "$EXPECTED" ]; then
  have=$(stat -c %s "$UPLOAD")
  if [ "$have" -ne "$EXPECTED" ]; then
    echo "upload arrived short: $have of $EXPECTED bytes" >&2
    rm -f "$UPLOAD"
    exit "$SHORT_EXIT"
  fi
fi
timeout "$TIMEOUT" dd if="$UPLOAD" of="$PIPE" bs=65536 conv=notrunc status=none
rc=$?
rm -f "$UPLOAD"
if [ "$rc" -eq "$TIMEOUT_EXIT" ]; then
  echo "timed out after ${TIMEOUT}s writing to $PIPE: the session is not reading its stdin" >&2
fi
exit "$rc"
