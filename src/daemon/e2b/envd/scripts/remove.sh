# shellcheck shell=bash
# Remove: P and everything under it (a symlink, never what it points at);
# nothing there is not an error (envd's RemoveAll).
# Given (after user.sh): P.
abs A "$P"
[ "$A" = / ] && fail 1 "refusing to remove /"
exec rm -rf -- "$A"
