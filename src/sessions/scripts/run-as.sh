# shellcheck shell=bash
# Who and where a guest command runs (vm exec and session runners share it).
# Given: RUN_USER (empty: stay root; else NAME, UID, NAME:GROUP or UID:GID,
# as Docker's -u), RUN_CWD (may be empty), RUN_ENV (array of KEY=VALUE),
# optionally RUN_CWD_HOME (no RUN_CWD means the user's home: "1" always,
# "login" only where the command would start in the login's own home, that
# is where no image workdir, an OCI WorkingDir its login wrapper entered,
# moved it) and
# RUN_USER_OPTIONAL (non-empty: RUN_USER is a default nobody asked for, and a
# guest without that account runs the command as root, as envd does for a
# template that names no user).
# The including script defines refuse MESSAGE (print one line and exit), and
# getent_entry (getent.sh) comes before this.
# Sets AS: the argv prefix that drops to RUN_USER (empty for root as is).
run_as_prepare() {
  # shellcheck disable=SC2034 # AS is for the including script
  AS=()
  local u="" g="" name="" uid gid home
  if [ -n "$RUN_USER" ]; then
    u=${RUN_USER%%:*}
    case $RUN_USER in *:*) g=${RUN_USER#*:} ;; esac
    if getent_entry passwd "$u"; then
      IFS=: read -r name _ uid gid _ home _ <<< "$ENTRY"
    elif [[ $u =~ ^[0-9]+$ ]]; then
      # a uid with no passwd entry is allowed (as in Docker): group 0, HOME /
      uid=$u gid=0 home=/
    elif [ -n "${RUN_USER_OPTIONAL-}" ]; then
      u=""
    else
      refuse "no such user in the guest: $u"
    fi
  fi
  if [ -n "$u" ]; then
    if [ -n "$g" ]; then
      if getent_entry group "$g"; then
        IFS=: read -r _ _ gid _ <<< "$ENTRY"
      elif [[ $g =~ ^[0-9]+$ ]]; then
        gid=$g
      else
        refuse "no such group in the guest: $g"
      fi
    fi
    local groups=(--clear-groups)
    if [ -n "$name" ] && [ -z "$g" ]; then groups=(--init-groups); fi
    # shellcheck disable=SC2034 # AS is for the including script
    AS=(setpriv --reuid="$uid" --regid="$gid" "${groups[@]}" --)
    export HOME="$home" USER="${name:-$u}" LOGNAME="${name:-$u}"
  fi
  if [ -n "$RUN_CWD" ]; then
    if [ ! -d "$RUN_CWD" ]; then refuse "no such directory in the guest: $RUN_CWD"; fi
    cd -- "$RUN_CWD" 2> /dev/null || refuse "cannot enter directory in the guest: $RUN_CWD"
  elif [ "${RUN_CWD_HOME-}" = 1 ] || { [ "${RUN_CWD_HOME-}" = login ] && [ "$PWD" = ~root ]; }; then
    # (login: only where the login started, root's passwd home, which sshd and dropbear enter; ~root is bash's own lookup)
    # no cwd asked for: start in the user's home, as a login does (/ when it has none or it cannot be entered)
    cd -- "${HOME:-/}" 2> /dev/null || cd /
  fi
  # after HOME/USER above, so -e HOME=... still wins
  if [ "${#RUN_ENV[@]}" -gt 0 ]; then export -- "${RUN_ENV[@]}"; fi
}
