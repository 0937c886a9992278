# shellcheck shell=bash
# First part of every envd filesystem script: who the call acts for and
# where its paths are. envd runs as root and acts for E2B_USER: a relative
# path is under that user's home, what a call creates is theirs. Every
# failure is one line on stderr and an exit status the daemon maps to the
# SDK's error (fail STATUS MESSAGE).
# DEFAULTED=1: the SDK named no user and E2B_USER is envd's default, which
# only the base template has; a guest without it acts as root instead.
# getent_entry (src/sessions/scripts/getent.sh) comes before this.
# Given: E2B_USER, DEFAULTED, NO_USER_EXIT.
: "${E2B_USER:?}" "${DEFAULTED:?}" "${NO_USER_EXIT:?}"
fail() {
  printf '%s\n' "$2" >&2
  exit "$1"
}
if ! getent_entry passwd "$E2B_USER"; then
  [ "$DEFAULTED" = 1 ] && getent_entry passwd 0
  [ -n "$ENTRY" ] || fail "$NO_USER_EXIT" "error looking up user '$E2B_USER': unknown user"
fi
IFS=: read -r _ _ U_UID U_GID _ U_HOME _ <<< "$ENTRY"
# abs VAR PATH: VAR = PATH made absolute (home-relative, ~ expanded, . and ..
# folded, symlinks kept: realpath -m -s), by hand: a realpath would be a
# program per call. Any byte but NUL may be in a name, a newline too.
abs() {
  local p=$2 rest seg out=""
  # shellcheck disable=SC2088 # a literal ~ the SDK sent, expanded by hand
  case $p in
    "" | "~") p=$U_HOME ;;
    "~/"*) p=$U_HOME/${p#"~/"} ;;
    /*) ;;
    *) p=$U_HOME/$p ;;
  esac
  rest=$p/
  while [ -n "$rest" ]; do
    seg=${rest%%/*}
    rest=${rest#*/}
    case $seg in
      "" | .) ;;
      ..) out=${out%/*} ;;
      *) out=$out/$seg ;;
    esac
  done
  printf -v "$1" '%s' "${out:-/}"
}
# ensure_dirs DIR: make DIR and any missing parents, each new one owned by
# the user (envd's EnsureDirs); fails when something on the way is not a dir.
ensure_dirs() {
  local d=$1 m
  local missing=()
  while [ ! -e "$d" ] && [ ! -L "$d" ]; do
    missing=("$d" "${missing[@]}")
    d=${d%/*}
    [ -n "$d" ] || d=/
  done
  [ -d "$d" ] || fail "$NOT_DIR_EXIT" "path '$d' is not a directory"
  for m in "${missing[@]}"; do
    if mkdir -- "$m" 2> /dev/null; then
      chown -- "$U_UID:$U_GID" "$m" || exit 1
    elif [ ! -d "$m" ]; then
      mkdir -- "$m" || exit 1
    fi
  done
}
# entry PATH: PATH's record, every field NUL-terminated: type (find's %y),
# the type a symlink points at (%Y), size, octal mode, owner, group, mtime
# (epoch seconds with nanoseconds), link target as written, path.
entry() {
  find "$1" -maxdepth 0 -printf '%y\0%Y\0%s\0%m\0%u\0%g\0%T@\0%l\0%p\0'
}
