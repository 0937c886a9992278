# shellcheck shell=bash
# getent_entry DB KEY: sets ENTRY to KEY's line of DB (passwd or group), as
# `getent DB KEY` prints it (a numeric KEY is an id); fails when there is
# none. /etc/DB is read with builtins first: getent is a program, and under
# TCG each costs 90-180 ms. Only a key it does not list (NSS: LDAP, ...)
# asks getent.
getent_entry() {
  local db=$1 key=$2 line name rest id
  ENTRY=""
  if [ -r "/etc/$db" ]; then
    while IFS= read -r line || [ -n "$line" ]; do
      name=${line%%:*}
      rest=${line#*:}
      rest=${rest#*:}
      id=${rest%%:*}
      case $name in "" | [+-]*) continue ;; esac
      if [[ $key =~ ^[0-9]+$ ]]; then
        [ "$id" = "$key" ] || continue
      else
        [ "$name" = "$key" ] || continue
      fi
      ENTRY=$line
      return 0
    done < "/etc/$db"
  fi
  ENTRY=$(getent "$db" -- "$key") && [ -n "$ENTRY" ]
}
