# shellcheck shell=bash
# A read-only workspace after its VM booted again: the chmod is on disk, but
# root's read-only bind mount over it went with the old boot; made again.
# Nothing to do for a path that is gone, for a non-root login (chmod holds it)
# or where a read-only mount is already there.
# Given: DIR.
: "${DIR:?}"
[ -d "$DIR" ] || exit 0
[ "$EUID" = 0 ] || exit 0
# /proc/self/mounts escapes a space, tab, newline and backslash in a path as octal
ESC=${DIR//\\/\\134}
ESC=${ESC// /\\040}
ESC=${ESC//$'\t'/\\011}
ESC=${ESC//$'\n'/\\012}
while read -r _ at _ opts _; do
  if [ "$at" = "$ESC" ]; then case ",$opts," in *,ro,*) exit 0 ;; esac; fi
done < /proc/self/mounts
if ! { mount --bind -- "$DIR" "$DIR" && mount -o remount,bind,ro -- "$DIR"; }; then
  umount -- "$DIR" 2> /dev/null
  echo "could not make $DIR a read-only mount" >&2
  exit 1
fi
