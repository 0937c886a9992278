# shellcheck shell=bash
# Second half of a write or a copy that replaces or makes its destination:
# move what write.sh or extract.sh staged (FROM, inside or equal to TMP)
# to DEST and print DEST's info record (as info.sh); with ABORT=1 (the
# stream was cut) only remove TMP, leaving DEST as it was.
# Given: FROM, TMP, DEST, ABORT.
: "${FROM:?}" "${TMP:?}" "${DEST:?}" "${ABORT:?}"
if [ "$ABORT" = 1 ]; then exec rm -rf -- "$TMP"; fi
if ! mv -f -T -- "$FROM" "$DEST"; then
  rm -rf -- "$TMP"
  exit 1
fi
[ "$TMP" = "$FROM" ] || rm -rf -- "$TMP"
exec find "$DEST" -maxdepth 0 -printf '%y\0%s\0%m\0%T@\0%l\0%p\0'
