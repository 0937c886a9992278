# shellcheck shell=bash
# Stage stdin for P: a temp file next to it; prints the temp's path and the
# path it is for (each NUL-terminated); commit.sh renames it there once the
# caller knows the stream arrived whole, so a reader sees the old bytes or
# the new, never half, and a cut stream leaves P as it was. Parent dirs are
# made as needed. A symlink P is written through (what it points at gets the
# bytes, the link stays), as `echo > P` would; a device, FIFO or socket is
# never replaced by a file (NOT_REGULAR_EXIT).
# MODE (octal) if given, else an existing file's mode, else 644.
# Given: P, PARENT, MODE, IS_DIR_EXIT, NOT_DIR_EXIT, NOT_REGULAR_EXIT.
: "${P:?}" "${PARENT:?}" "${IS_DIR_EXIT:?}" "${NOT_DIR_EXIT:?}" "${NOT_REGULAR_EXIT:?}"
if [ -L "$P" ]; then
  IFS= read -r -d '' P < <(realpath -z -m -- "$P") || exit 1
  PARENT=${P%/*}
  PARENT=${PARENT:-/}
fi
[ -d "$P" ] && exit "$IS_DIR_EXIT"
if [ -e "$P" ] && [ ! -f "$P" ]; then exit "$NOT_REGULAR_EXIT"; fi
if [ ! -d "$PARENT" ]; then
  { [ -e "$PARENT" ] || [ -L "$PARENT" ]; } && exit "$NOT_DIR_EXIT"
  mkdir -p -- "$PARENT" || exit 1
fi
TMP=$(mktemp -- "$PARENT/.banger-write-XXXXXX") || exit 1
trap 'rm -f -- "$TMP"' EXIT
cat >"$TMP" || exit 1
if [ -n "$MODE" ]; then
  chmod -- "$MODE" "$TMP" || exit 1
elif [ -f "$P" ]; then
  chmod --reference="$P" -- "$TMP" || exit 1
else
  chmod 644 -- "$TMP" || exit 1
fi
trap - EXIT
printf '%s\0%s\0' "$TMP" "$P"
