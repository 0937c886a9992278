# shellcheck shell=sh
# Prints the sizes in bytes of a session's stdout and stderr logs, "<out> <err>"
# (0 for a missing one): where "from now on" starts. Run with exec.
# Given: DIR.
: "${DIR:?}"
o=$(stat -c %s "$DIR/stdout.log" 2> /dev/null) || o=0
e=$(stat -c %s "$DIR/stderr.log" 2> /dev/null) || e=0
echo "$o $e"
