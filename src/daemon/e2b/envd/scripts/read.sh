# shellcheck shell=bash
# GET /files: P's bytes on stdout, exactly (GZIP=1: gzip-compressed here in
# the guest, so fewer bytes cross SSH and the daemon does no compressing).
# Given (after user.sh): P, GZIP, NOT_FOUND_EXIT, IS_DIR_EXIT.
: "${GZIP:?}" "${NOT_FOUND_EXIT:?}" "${IS_DIR_EXIT:?}"
abs A "$P"
[ -e "$A" ] || fail "$NOT_FOUND_EXIT" "path '$A' does not exist"
[ -d "$A" ] && fail "$IS_DIR_EXIT" "path '$A' is a directory"
exec < "$A" || exit 1
if [ "$GZIP" = 1 ]; then exec gzip -1 -n -c; fi
exec cat
