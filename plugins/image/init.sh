#!/bin/bash
# banger guest PID 1 (/sbin/banger-init). No systemd: mount the API
# filesystems, apply the per-VM seed, bring up the network, start dropbear,
# print BANGER-READY on the console, then reap children until told to stop.
#
# Shutdown: SIGUSR1/SIGTERM/SIGPWR (poweroff), SIGUSR2/SIGINT (reboot, which
# ends the VM under QEMU -no-reboot). SIGINT is what the kernel sends PID 1 on
# ctrl-alt-del. The ACPI power button (QMP system_powerdown) is watched on its
# evdev node and turned into SIGUSR1; /usr/sbin/poweroff does the same.
#
# Kernel command line (all optional):
#   banger.ip=10.0.2.15/24 banger.gw=10.0.2.2 banger.dns=10.0.2.3
#   banger.hostname=NAME (the seed wins) banger.work=/dev/vdb

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=linux LANG=C.UTF-8
umask 022
cd /

SEED=/run/banger-seed
SHUTTING_DOWN=0

# Every fork+exec is expensive under TCG, so checks use builtins only.
_mounted() { # target
  local _dev mp _rest
  while read -r _dev mp _rest; do [ "$mp" = "$1" ] && return 0; done </proc/mounts
  return 1
}
_mnt() { # type target options
  [ -d "$2" ] || mkdir -p "$2"
  if [ -r /proc/mounts ] && _mounted "$2"; then return 0; fi
  mount -t "$1" -o "$3" "$1" "$2"
}

_mnt proc /proc nosuid,nodev,noexec
_mnt sysfs /sys nosuid,nodev,noexec
_mnt devtmpfs /dev mode=0755,nosuid
exec </dev/console >/dev/console 2>&1
_mnt devpts /dev/pts mode=0620,gid=5,ptmxmode=0666,nosuid,noexec
_mnt tmpfs /run mode=0755,nosuid,nodev
_mnt tmpfs /tmp mode=1777,nosuid,nodev
_mnt tmpfs /dev/shm mode=1777,nosuid,nodev
[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
[ -e /dev/ptmx ] || ln -s pts/ptmx /dev/ptmx
[ -d /run/lock ] || mkdir -p /run/lock
[ -d /var/log/banger ] || mkdir -p /var/log/banger

log() { echo "banger-init: $*"; }
DEBUG=0
# stage timestamps (guest uptime) with banger.debug=1; builtins only, no forks
_stage() { [ "$DEBUG" = 1 ] || return 0; local up _; read -r up _ </proc/uptime; log "$up $*"; }

# --- kernel command line ----------------------------------------------------
IP=10.0.2.15/24 GW=10.0.2.2 DNS=10.0.2.3 HOSTNAME_ARG="" WORKDEV=/dev/vdb
read -r CMDLINE </proc/cmdline
for w in $CMDLINE; do
  case "$w" in
    banger.ip=*) IP="${w#banger.ip=}" ;;
    banger.gw=*) GW="${w#banger.gw=}" ;;
    banger.dns=*) DNS="${w#banger.dns=}" ;;
    banger.hostname=*) HOSTNAME_ARG="${w#banger.hostname=}" ;;
    banger.work=*) WORKDEV="${w#banger.work=}" ;;
    banger.debug=1) DEBUG=1 ;;
  esac
done
_stage "mounted"

# --- per-VM seed (unpacked from the second initrd cpio into /run) -------------
NAME=""
[ -r "$SEED/hostname" ] && read -r NAME <"$SEED/hostname"
[ -n "$NAME" ] || NAME="$HOSTNAME_ARG"
[[ "$NAME" =~ ^[a-z0-9][a-z0-9-]{0,62}$ ]] || NAME=banger
echo "$NAME" >/proc/sys/kernel/hostname
echo "$NAME" >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n' "$NAME" >/etc/hosts

[ -d /root/.ssh ] || mkdir -m 0700 /root/.ssh
if [ -r "$SEED/authorized_keys" ]; then
  umask 077
  while IFS= read -r line || [ -n "$line" ]; do echo "$line"; done <"$SEED/authorized_keys" >/root/.ssh/authorized_keys
  umask 022
else
  log "no authorized_keys in the seed: nobody can log in"
fi
# Extra files the host asked for, laid out under files/ as absolute paths.
[ -d "$SEED/files" ] && cp -a "$SEED/files/." /

HOSTKEY="$SEED/dropbear_ed25519_host_key"
if [ ! -r "$HOSTKEY" ]; then
  # Generating at boot is slow under TCG; the host normally seeds one.
  log "no host key in the seed: generating one"
  [ -d "$SEED" ] || mkdir -p "$SEED"
  dropbearkey -t ed25519 -f "$HOSTKEY" >/dev/null 2>&1
fi
# dropbear -R (below) loads no host key at start: each connection's (forked)
# process reads this file, so a clone's identity replaces the key with no new
# dropbear (~0.3 s of guest CPU under TCG). Banger's images carry the link;
# one made otherwise gets it here.
KEYLINK=/etc/dropbear/dropbear_ed25519_host_key
if ! [ "$KEYLINK" -ef "$HOSTKEY" ]; then
  [ -d /etc/dropbear ] || mkdir -p /etc/dropbear
  ln -sfn "$HOSTKEY" "$KEYLINK"
fi

_stage "seed applied"
# --- network --------------------------------------------------------------------
# one `ip -batch` instead of four processes
if [ -e /sys/class/net/eth0 ]; then
  {
    echo "link set lo up"
    echo "addr add $IP dev eth0"
    echo "link set eth0 up"
    [ -n "$GW" ] && echo "route add default via $GW dev eth0"
  } | ip -batch - || log "network setup failed"
else
  ip link set lo up
  log "no eth0"
fi
[ -n "$DNS" ] && echo "nameserver $DNS" >/etc/resolv.conf

# --- work disk --------------------------------------------------------------------
if [ -b "$WORKDEV" ]; then
  mkdir -p /work
  mount -o noatime "$WORKDEV" /work || log "cannot mount $WORKDEV on /work"
fi

_stage "network + work disk"
# --- shutdown ------------------------------------------------------------------------
_others_alive() {
  local d
  for d in /proc/[0-9]*; do
    case "${d#/proc/}" in 1 | "$BASHPID") continue ;; esac
    # kernel threads and zombies have no exe
    [ -e "$d/exe" ] && return 0
  done
  return 1
}

_shutdown() { # poweroff | reboot
  [ "$SHUTTING_DOWN" = 1 ] && return
  SHUTTING_DOWN=1
  trap '' TERM USR1 USR2 INT PWR
  log "$1: stopping processes"
  kill -TERM -1 2>/dev/null
  local i
  for ((i = 0; i < 30; i++)); do
    _others_alive || break
    sleep 0.1
  done
  kill -KILL -1 2>/dev/null
  sync
  if _mounted /work; then umount /work 2>/dev/null || umount -l /work; fi
  mount -o remount,ro / 2>/dev/null || log "cannot remount / read-only"
  sync
  log "$1"
  if [ "$1" = reboot ]; then echo b >/proc/sysrq-trigger; else echo o >/proc/sysrq-trigger; fi
  sleep 10
  echo b >/proc/sysrq-trigger
}
trap '_shutdown poweroff' TERM USR1 PWR
trap '_shutdown reboot' USR2 INT
trap '' HUP

# The ACPI power button (q35 + QMP system_powerdown) shows up as an input
# device once `button` and `evdev` are loaded (the initramfs loads them). Any
# event from it is a press.
_watch_power_button() {
  local d name
  for d in /sys/class/input/event*; do
    [ -r "$d/device/name" ] || continue
    read -r name <"$d/device/name"
    [ "$name" = "Power Button" ] || continue
    (
      trap - TERM USR1 USR2 INT PWR HUP
      # evdev reads whole events (24 bytes on x86_64); a shorter read is EINVAL.
      dd if="/dev/input/${d##*/}" of=/dev/null bs=24 count=1 status=none && kill -USR1 1
    ) </dev/null &
  done
}
_watch_power_button

_stage "power button watched"
# --- ssh --------------------------------------------------------------------------------
# -s: keys only, no passwords; root may log in (by key). -R with a host key
# file that is not there: no key is loaded now (not even the default file's),
# and each connection reads KEYLINK (only ed25519 is offered to banger).
dropbear -F -E -s -R -r /run/banger-no-preloaded-host-key -p 22 -P /run/dropbear.pid </dev/null >>/var/log/banger/dropbear.log 2>&1 &

_listening() { # port 22 in LISTEN state (0A) in /proc/net/tcp{,6}
  local f addr st
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    # fields: sl local_address rem_address st ...
    while read -r _ addr _ st _; do
      [[ "$addr" == *:0016 && "$st" == 0A ]] && return 0
    done <"$f"
  done
  return 1
}
for ((i = 0; i < 200; i++)); do
  _listening && break
  sleep 0.05
done
_stage "dropbear listening"

# --- the host's channel -------------------------------------------------------------------
# A virtio-serial port named banger.agent, where the VMM gives one (QEMU): the
# host sends a line `run NONCE LENGTH` and a script of LENGTH bytes, which runs
# in a subshell of this resident bash with the port as its stdin and stdout,
# then gets one line `banger-agent NONCE exit CODE LAST-LINE-OF-STDERR`. A
# restored guest's clock and a clone's identity are set this way: under TCG an
# SSH handshake and a bash start cost a restored guest ~0.45 s of CPU, a
# subshell next to nothing (plugins/guest/agent.ts is the host side).
_agent() {
  LC_ALL=C # read -N counts bytes
  local line nonce len script rc err l
  while IFS= read -r line; do
    [[ $line =~ ^run\ ([0-9a-f]{8,64})\ ([0-9]{1,7})$ ]] || continue
    nonce=${BASH_REMATCH[1]} len=${BASH_REMATCH[2]} script=
    if ((len > 0)) && ! IFS= read -r -N "$len" script; then break; fi
    (eval "$script") 2>/run/banger-agent.err
    rc=$?
    err=
    while IFS= read -r l || [ -n "$l" ]; do [ -n "$l" ] && err=$l; done </run/banger-agent.err
    printf 'banger-agent %s exit %d %s\n' "$nonce" "$rc" "$err"
  done
}
AGENT_PORT='' EXEC_PORT=''
for f in /sys/class/virtio-ports/*/name; do
  [ -r "$f" ] || continue
  read -r n <"$f" || continue
  f=${f%/name}
  case "$n" in
    banger.agent) AGENT_PORT=/dev/${f##*/} ;;
    banger.exec) EXEC_PORT=/dev/${f##*/} ;;
  esac
done
if [ -n "$AGENT_PORT" ] && [ -c "$AGENT_PORT" ]; then
  _agent <>"$AGENT_PORT" >&0 2>/dev/null &
  # before the ready line: the host reads both from this console log at once
  echo "BANGER-AGENT"
fi
# A second port, banger.exec, for `vm exec` without an SSH handshake: a
# resident perl program (perl-base is Essential, but an OCI-derived image may
# lack it) runs commands as dropbear would and multiplexes their output
# (/usr/lib/banger/exec-agent.pl says how).
EXEC_AGENT=/usr/lib/banger/exec-agent.pl
if [ -n "$EXEC_PORT" ] && [ -c "$EXEC_PORT" ] && [ -r "$EXEC_AGENT" ] && command -v perl >/dev/null; then
  perl "$EXEC_AGENT" <>"$EXEC_PORT" >&0 2>/dev/null &
  echo "BANGER-EXEC-AGENT"
fi

if _listening; then
  echo "BANGER-READY"
else
  echo "BANGER-BOOT-FAILED: dropbear is not listening (see /var/log/banger/dropbear.log)"
fi

# --- reap ------------------------------------------------------------------------------
# bash reaps every child (orphans included) in its SIGCHLD handler; `wait`
# returns early when a trapped signal arrives so the trap runs promptly.
while :; do
  sleep 3600 &
  wait $!
done
