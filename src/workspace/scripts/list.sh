# shellcheck shell=bash
# The workspace record (finalize.sh writes it, guard.sh compares against it),
# in DIR's repo. _list_tree: one NUL-ended line per file git sees (tracked, or
# untracked and not ignored): its type and permissions with the write bits
# masked (a read-only workspace is chmod a-w after the listing), size, mtime
# and inode, then its path; a directory (a submodule) is listed without size
# and mtime, which change with whatever is made inside it. _list_refs: HEAD
# and the branches.
# Given: DIR (the guest path).
: "${DIR:?}"
_list_tree() {
  (set -o pipefail; cd -- "$DIR" && git ls-files -z --cached --others --exclude-standard |
    { xargs -0 -r stat --printf '%A %s %.9Y %i %n\0' -- 2>/dev/null || true; } |
    sed -z -e ':w' -e 's/^\([^ w]*\)w/\1-/' -e 'tw' -e 's/^\(d[^ ]*\) [^ ]* [^ ]*/\1 - -/')
}
_list_refs() {
  (cd -- "$DIR" && { git symbolic-ref -q HEAD; git rev-parse -q --verify HEAD; git for-each-ref --format='%(objectname) %(refname)' refs/heads; })
}
