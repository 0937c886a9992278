# shellcheck shell=bash
# POST /files, first half: stage stdin (GUNZIP=1: gzip, unpacked here) in a
# temp file next to P, owned and moded as P will be (P's own owner and mode
# when it exists, else the user's and 644), and print the temp's path and
# the path written (NUL-terminated); commit.sh moves it into place once the
# daemon knows the body arrived whole. Parents are made for the user.
# Given (after user.sh): P, GUNZIP, IS_DIR_EXIT, NOT_DIR_EXIT.
: "${GUNZIP:?}" "${IS_DIR_EXIT:?}" "${NOT_DIR_EXIT:?}"
abs A "$P"
# a symlink is written through, as envd's open(2) does: what it points at
# gets the bytes (made if missing), the link stays
if [ -L "$A" ]; then IFS= read -r -d '' A < <(realpath -z -m -- "$A"); fi
[ "$A" = / ] && fail "$IS_DIR_EXIT" "path '/' is a directory"
[ -d "$A" ] && fail "$IS_DIR_EXIT" "path '$A' is a directory"
# a device, FIFO or socket is never replaced by a file (the rename would)
if [ -e "$A" ] && [ ! -f "$A" ]; then fail "$IS_DIR_EXIT" "path '$A' is not a regular file"; fi
PARENT=${A%/*}
PARENT=${PARENT:-/}
ensure_dirs "$PARENT"
# the temp made as mktemp would (a new name, O_EXCL by noclobber), without
# starting mktemp: under TCG each program costs 90-180 ms. A new file's mode
# 644 from the start (umask), so it needs no chmod; over an existing file,
# 600 until it has that file's mode (which may be stricter than 644).
if [ -f "$A" ]; then umask 077; else umask 022; fi
set -C
i=0
until TMP=${PARENT%/}/.banger-write-$SRANDOM$SRANDOM && : 2> /dev/null > "$TMP"; do
  i=$((i + 1))
  [ "$i" -lt 20 ] || fail 1 "cannot create a temp file in '$PARENT'"
done
set +C
trap 'rm -f -- "$TMP"' EXIT
if [ "$GUNZIP" = 1 ]; then
  gzip -d -c >| "$TMP" || fail 1 "the body is not valid gzip"
else
  cat >| "$TMP" || exit 1
fi
if [ -f "$A" ]; then
  chown --reference="$A" -- "$TMP" && chmod --reference="$A" -- "$TMP" || exit 1
else
  chown -- "$U_UID:$U_GID" "$TMP" || exit 1
fi
trap - EXIT
printf '%s\0%s\0' "$TMP" "$A"
