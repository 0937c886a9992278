# shellcheck shell=sh
# Live attach input, run with exec: streams our stdin into the session's FIFO.
# Given: PIPE.
: "${PIPE:?}"
exec cat > "$PIPE"
