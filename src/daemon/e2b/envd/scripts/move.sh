# shellcheck shell=bash
# Move: rename SRC to DST (replacing a file there, as rename(2)), making
# DST's parents for the user; DST's record.
# Given (after user.sh): SRC, DST, NOT_FOUND_EXIT, NOT_DIR_EXIT.
: "${NOT_FOUND_EXIT:?}" "${NOT_DIR_EXIT:?}"
abs S "$SRC"
abs D "$DST"
[ -e "$S" ] || [ -L "$S" ] || fail "$NOT_FOUND_EXIT" "source file not found: '$S' does not exist"
PARENT=${D%/*}
ensure_dirs "${PARENT:-/}"
mv -T -- "$S" "$D" || exit 1
entry "$D"
