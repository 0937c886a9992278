# shellcheck shell=bash
# shellcheck disable=SC2154 # the values are set by renderScript
# A clone runs on from another VM's memory, with that VM's identity: give it
# its own. NAME: its hostname; AUTHORIZED_KEY: its client key (the parent's
# stops working); HOST_KEY: where its dropbear host key was uploaded;
# ENTROPY: host randomness (hex).
set -e
echo "$NAME" >/proc/sys/kernel/hostname
echo "$NAME" >/etc/hostname
umask 077
printf '%s\n' "$AUTHORIZED_KEY" >/root/.ssh/authorized_keys.new
mv /root/.ssh/authorized_keys.new /root/.ssh/authorized_keys
# The kernel RNG state is the parent's: mix host randomness in, then make the
# CRNG reseed from it now (RNDRESEEDCRNG; the cloud kernel has no vmgenid).
printf '%s' "$ENTROPY" >/dev/urandom
perl -e 'open(my $f, ">", "/dev/urandom") or die "$!\n"; ioctl($f, 0x5207, 0) or die "RNDRESEEDCRNG: $!\n"'
# A new listener with the clone's host key; connections already open (this one) keep theirs.
old=$(cat /run/dropbear.pid 2>/dev/null || true)
if [ -n "$old" ]; then
  kill "$old" 2>/dev/null || true
  for _ in $(seq 1 100); do
    [ -e "/proc/$old" ] || break
    sleep 0.02
  done
fi
setsid dropbear -F -E -s -r "$HOST_KEY" -p 22 -P /run/dropbear.pid </dev/null >>/var/log/banger/dropbear.log 2>&1 &
