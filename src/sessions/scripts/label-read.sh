# shellcheck shell=sh
# Prints a session's label (DIR/label); nothing when it has none. Run with exec.
# Given: DIR.
: "${DIR:?}"
cat "$DIR/label" 2> /dev/null
exit 0
