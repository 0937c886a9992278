# shellcheck shell=bash
# The receiving half of `vm cp`: untar stdin at DEST with docker cp's rules.
# NAME empty: a tar stream the user gave (`cp - VM:DIR`), extracted into DEST,
# which must be a dir. Otherwise the stream holds one top-level entry NAME:
# - DEST is a dir: NAME goes into it (CONTENTS=1, the source was DIR/.: what
#   is under NAME goes into it instead);
# - DEST is not there: NAME becomes DEST (a file source and a DEST written with
#   a trailing slash is an error: that directory does not exist);
# - DEST is a file: a file replaces it, a dir cannot.
# Those last two extract into a temp dir next to DEST and print its path and
# DEST's (each NUL-terminated): the caller renames it into place with commit.sh only
# once it knows the stream arrived whole (a cut stream can end at a tar
# member's boundary, which tar takes for a whole archive), so DEST is never
# half there. Modes are kept, owners are not (the receiving user owns).
# A symlink DEST is written through (what it points at is replaced, the link
# stays); a device, FIFO or socket, as DEST or as DEST/NAME, is never
# replaced (NOT_REGULAR_EXIT).
# KIND is what NAME is ("dir" or "file") when the caller knows it, so those
# refusals come before a byte is read; "" leaves them to the check after.
# Given: DEST, PARENT, NAME, CONTENTS, SLASH, KIND, NOT_FOUND_EXIT, NOT_DIR_EXIT, DIR_TO_FILE_EXIT, NOT_REGULAR_EXIT.
: "${DEST:?}" "${PARENT:?}" "${CONTENTS:?}" "${SLASH:?}" "${NOT_FOUND_EXIT:?}" "${NOT_DIR_EXIT:?}" "${DIR_TO_FILE_EXIT:?}" "${NOT_REGULAR_EXIT:?}"
# neither a file nor a dir nor a link: a device, FIFO or socket
special() { [ -e "$1" ] && [ ! -f "$1" ] && [ ! -d "$1" ] && [ ! -L "$1" ]; }
untar() { tar -x -p --no-same-owner -f - "$@"; }
if [ -z "$NAME" ]; then
  if [ ! -d "$DEST" ]; then
    { [ -e "$DEST" ] || [ -L "$DEST" ]; } && exit "$NOT_DIR_EXIT"
    exit "$NOT_FOUND_EXIT"
  fi
  untar -C "$DEST"
  exit
fi
if [ -d "$DEST" ]; then
  if [ "$CONTENTS" = 1 ]; then
    untar -C "$DEST" --strip-components=1
  else
    # what tar would replace at DEST/NAME: never a device; a dir never a file (docker cp refuses it too)
    special "$DEST/$NAME" && exit "$NOT_REGULAR_EXIT"
    if [ "$KIND" = dir ] && { [ -e "$DEST/$NAME" ] || [ -L "$DEST/$NAME" ]; } && [ ! -d "$DEST/$NAME" ]; then exit "$DIR_TO_FILE_EXIT"; fi
    untar -C "$DEST"
  fi
  exit
fi
[ -d "$PARENT" ] || exit "$NOT_FOUND_EXIT"
if [ "$KIND" = dir ] && { [ -e "$DEST" ] || [ -L "$DEST" ]; }; then exit "$DIR_TO_FILE_EXIT"; fi
if [ "$KIND" = file ] && [ "$SLASH" = 1 ]; then exit "$NOT_FOUND_EXIT"; fi
if [ -L "$DEST" ] && [ "$SLASH" = 0 ]; then
  IFS= read -r -d '' DEST < <(realpath -z -m -- "$DEST") || exit 1
  PARENT=${DEST%/*}
  PARENT=${PARENT:-/}
  [ -d "$PARENT" ] || exit "$NOT_FOUND_EXIT"
fi
special "$DEST" && exit "$NOT_REGULAR_EXIT"
TMP=$(mktemp -d -- "$PARENT/.banger-cp-XXXXXX") || exit 1
trap 'rm -rf -- "$TMP"' EXIT
untar -C "$TMP" || exit
ITEM=$TMP/$NAME
if [ -d "$ITEM" ] && [ ! -L "$ITEM" ]; then
  if [ -e "$DEST" ] || [ -L "$DEST" ]; then exit "$DIR_TO_FILE_EXIT"; fi
elif [ "$SLASH" = 1 ]; then
  exit "$NOT_FOUND_EXIT"
fi
trap - EXIT
printf '%s\0%s\0' "$TMP" "$DEST"
