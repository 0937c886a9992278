# shellcheck shell=bash
# MakeDir: dir P and its parents, owned by the user; P's record.
# Given (after user.sh): P, EXISTS_EXIT, NOT_DIR_EXIT.
: "${EXISTS_EXIT:?}" "${NOT_DIR_EXIT:?}"
abs A "$P"
[ -d "$A" ] && fail "$EXISTS_EXIT" "directory '$A' already exists"
{ [ -e "$A" ] || [ -L "$A" ]; } && fail "$NOT_DIR_EXIT" "path '$A' already exists but it is not a directory"
ensure_dirs "$A"
entry "$A"
