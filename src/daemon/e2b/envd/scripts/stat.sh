# shellcheck shell=bash
# Stat: P's record (a symlink as itself).
# Given (after user.sh): P, NOT_FOUND_EXIT.
: "${NOT_FOUND_EXIT:?}"
abs A "$P"
[ -e "$A" ] || [ -L "$A" ] || fail "$NOT_FOUND_EXIT" "file not found: '$A' does not exist"
entry "$A"
