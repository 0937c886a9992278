# shellcheck shell=bash
# shellcheck disable=SC2154 # the values are set by renderScript
# Runs right after set-clock.sh, in the same bash (one SSH exec for both).
# A clone runs on from another VM's memory, with that VM's identity and
# kernel state: give it its own. NAME: its hostname; AUTHORIZED_KEY: its
# client key (the parent's stops working); HOST_KEY: its dropbear host key as
# printf %b escapes; ENTROPY: host randomness (hex); CLOCK_RESEED: the
# program that sets the clock and reseeds the RNG (plugins/guest/
# clock-reseed-elf.ts), as printf %b escapes. Bash builtins but for that
# program (and, after an older init, a new dropbear): each program costs
# 50-350 ms under TCG.
set -e
# The kernel RNG state is the parent's: mix host randomness in, then make the
# CRNG reseed from it now (RNDRESEEDCRNG; the cloud kernel has no vmgenid).
printf '%s' "$ENTROPY" >/dev/urandom
if [[ $HOSTTYPE == x86_64 ]]; then
  prog=/run/banger-seed/clock-reseed
  if [ ! -x "$prog" ]; then # a VM booted before banger seeded it
    prog=/run/banger-clock-reseed
    printf '%b' "$CLOCK_RESEED" >"$prog"
    chmod 700 "$prog"
  fi
  # the offset in ns as 8 bytes, little-endian (>> keeps the sign)
  ns=$((offset_us * 1000)) bytes=''
  for ((k = 0; k < 8; k++)); do
    printf -v b '\\x%02x' $(((ns >> (8 * k)) & 255))
    bytes+=$b
  done
  printf '%b' "$bytes" >/run/banger-clock-offset
  "$prog" </run/banger-clock-offset || { echo "setting the clock or reseeding the kernel RNG failed (errno $?)" >&2; exit 4; }
else
  now=${EPOCHREALTIME/./}
  t=$((now + offset_us))
  printf -v frac '%06d' $((t % 1000000))
  date -u -s "@$((t / 1000000)).$frac" >/dev/null
  perl -e 'open(my $f, ">", "/dev/urandom") or die "$!\n"; ioctl($f, 0x5207, 0) or die "RNDRESEEDCRNG: $!\n"' ||
    { echo "reseeding the kernel RNG failed" >&2; exit 4; }
fi
echo "$NAME" >/proc/sys/kernel/hostname
echo "$NAME" >/etc/hostname
umask 077
# in place (no mv: a program): nothing else logs in while this runs, and a clone that fails here is deleted
printf '%s\n' "$AUTHORIZED_KEY" >/root/.ssh/authorized_keys

# The host key. A dropbear started with -R (banger's init does) reads
# /etc/dropbear/dropbear_ed25519_host_key at each connection: replacing the
# file is all it takes, the next connection meets the clone's key. One that
# loaded its key at start (a VM booted by an older init) is replaced by one
# that does not.
old=
read -r old </run/dropbear.pid || :
per_connection=0
if [ -n "$old" ] && [ -r "/proc/$old/cmdline" ]; then
  mapfile -d '' -t argv <"/proc/$old/cmdline"
  for a in "${argv[@]}"; do [ "$a" = -R ] && per_connection=1; done
fi
[ -d /etc/dropbear ] || mkdir -p /etc/dropbear
printf '%b' "$HOST_KEY" >/etc/dropbear/dropbear_ed25519_host_key
[ "$per_connection" = 1 ] && exit 0

_listening() { # port 22 in LISTEN state (0A) in /proc/net/tcp{,6}, as the guest's init checks it
  local f addr st
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    while read -r _ addr _ st _; do
      [[ "$addr" == *:0016 && "$st" == 0A ]] && return 0
    done <"$f"
  done
  return 1
}
# a 10 ms sleep without a program: our stdin stays open and silent until we exit
_pause() { IFS= read -r -t 0.01 _ || :; }

# A new listener, reading the clone's host key per connection; this connection keeps the old one's.
if [ -n "$old" ]; then kill "$old" 2>/dev/null || :; fi
for ((i = 0; i < 300; i++)); do
  _listening || break
  _pause
done
# not setsid (one more program): no terminal here, and HUP ignored as the guest's init
# started the first one (init ignores it; we inherit that through dropbear already)
trap '' HUP
dropbear -F -E -s -R -r /run/banger-no-preloaded-host-key -p 22 -P /run/dropbear.pid </dev/null >>/var/log/banger/dropbear.log 2>&1 &
new=$!
# as long as a loaded host takes to start it (2 min at most), unless it dies
for ((i = 0; i < 12000; i++)); do
  _listening && exit 0
  if [ ! -e "/proc/$new" ]; then
    echo "the clone's dropbear exited (see /var/log/banger/dropbear.log)" >&2
    exit 3
  fi
  _pause
done
echo "the clone's dropbear is not listening after 2 min (see /var/log/banger/dropbear.log)" >&2
exit 3
