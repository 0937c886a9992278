# shellcheck shell=bash
# Workspace prepare, full copy, first (StageCommand, after list.sh): unless
# FORCE=yes, refuse to replace a guest tree holding work the host would not
# get back: commits the last prepare did not send, or files git sees (ignored
# ones, such as build output, do not count) added, removed or changed since
# (a file whose content is back to the prepared-from commit's holds nothing
# the host lacks). The last prepare left its record in .git (finalize.sh): TREE_FILE from
# _list_tree and REFS_FILE from _list_refs; a tree without one is not checked.
# Says what it found on stderr and exits GUEST_WORK_EXIT.
# Given: DIR (the guest path), TREE_FILE, REFS_FILE, BASE_FILE (in .git),
# GUEST_WORK_EXIT, FORCE ("yes" or "no").
: "${DIR:?}" "${TREE_FILE:?}" "${REFS_FILE:?}" "${BASE_FILE:?}" "${GUEST_WORK_EXIT:?}" "${FORCE:?}"
# Of the paths on stdin (one a line, run in DIR), those not a regular file with the content it has in commit $1.
_not_as_in() {
  local p files=() others=()
  while IFS= read -r p; do
    if [ -f "$p" ] && [ ! -L "$p" ]; then files+=("$p"); else others+=("$p"); fi
  done
  [ "${#others[@]}" -eq 0 ] || printf '%s\n' "${others[@]}"
  [ "${#files[@]}" -gt 0 ] || return 0
  # paths with a tab or newline were made '?' and match nothing here: they stay changed
  paste <(printf '%s\n' "${files[@]}" | git hash-object --stdin-paths 2>/dev/null) <(printf '%s\n' "${files[@]}") |
    awk -F '\t' 'NR == FNR { split($1, a, " "); base[$2] = a[3]; next } base[$2] != $1 { print $2 }' <(git ls-tree -r --full-tree "$1") -
}
_guest_work() {
  local g=$DIR/.git changed c n base h commits=0 heads=(--branches) sent=() what=()
  [ -f "$g/$TREE_FILE" ] && [ -f "$g/$REFS_FILE" ] && command -v git >/dev/null 2>&1 || return 1
  # a line in one listing only is a file added, removed or changed: its path, once
  changed=$(LC_ALL=C comm -z -3 <(LC_ALL=C sort -z -- "$g/$TREE_FILE") <(_list_tree | LC_ALL=C sort -z) |
    sed -z 's/^\([^ ]* \)\{4\}//' | LC_ALL=C sort -zu | tr '\0\n\t' '\n??')
  base=$(cat -- "$g/$BASE_FILE" 2>/dev/null) || base=
  if [ -n "$changed" ] && [ -n "$base" ]; then
    if c=$(cd -- "$DIR" && printf '%s\n' "$changed" | _not_as_in "$base" | LC_ALL=C sort); then changed=$c; fi
  fi
  if [ -n "$changed" ]; then
    n=$(printf '%s\n' "$changed" | wc -l)
    what+=("$n file$([ "$n" = 1 ] || echo s) added, removed or changed since the last prepare: $(printf '%s\n' "$changed" | head -n 3 | awk 'NR > 1 { printf ", " } { printf "%s", $0 }')$([ "$n" -le 3 ] || echo ' …')")
  fi
  # commits reachable from HEAD or a branch and from nothing the record names
  if [ "$(_list_refs)" != "$(cat -- "$g/$REFS_FILE")" ]; then
    mapfile -t sent < <(awk '$1 ~ /^[0-9a-f]+$/ { print "^" $1 }' "$g/$REFS_FILE")
    if h=$(cd -- "$DIR" && git rev-parse -q --verify HEAD); then heads+=("$h"); fi
    commits=$(cd -- "$DIR" && git rev-list --count "${heads[@]}" "${sent[@]}" -- 2>/dev/null) || commits=0
  fi
  [ "$commits" -gt 0 ] && what=("$commits commit$([ "$commits" = 1 ] || echo s) made in the guest" "${what[@]}")
  [ "${#what[@]}" -gt 0 ] || return 1
  local out=${what[0]} w
  for w in "${what[@]:1}"; do out+="; $w"; done
  echo "$out" >&2
}
if [ "$FORCE" != yes ] && [ -d "$DIR" ] && [ ! -L "$DIR" ] && _guest_work; then
  exit "$GUEST_WORK_EXIT"
fi
