# shellcheck shell=bash
# Removes a session's state dir (run with bash -s).
# Given: DIR.
: "${DIR:?}"
rm -rf -- "$DIR"
