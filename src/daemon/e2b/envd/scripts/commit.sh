# shellcheck shell=bash
# POST /files, second half: with ABORT=1 remove the staged TMP; else move it
# onto DEST and print DEST's record. A new DEST is made (empty) first, so a
# watcher sees it created and then written, as when envd writes in place.
# Given (after user.sh): TMP, DEST, ABORT.
: "${TMP:?}" "${DEST:?}" "${ABORT:?}"
if [ "$ABORT" = 1 ]; then exec rm -f -- "$TMP"; fi
if [ ! -e "$DEST" ] && [ ! -L "$DEST" ]; then : > "$DEST"; fi
if ! mv -f -T -- "$TMP" "$DEST"; then
  rm -f -- "$TMP"
  exit 1
fi
entry "$DEST"
