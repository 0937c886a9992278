# shellcheck shell=bash
# shellcheck disable=SC2154 # the values are set by renderScript
# A clone runs on from its parent's memory with the parent's MAC, address and
# routes: give it its own. The host reaches it meanwhile over the IPv6
# link-local address of its tap, which is not on the bridge yet.
# DEV: the NIC (banger's init configures eth0); MAC: its own MAC; ADDR: its
# own a.b.c.d/prefix; GW: the bridge's address; LINK_LOCAL: fe80::… made from
# MAC, added last (the host waits for it to answer before it puts the tap on
# the bridge); LOG: where the detached part's errors go.
set -e
# the values become `ip` words: anything but these forms is refused, not run
[[ "$DEV" =~ ^[A-Za-z0-9_.-]{1,15}$ ]] || { echo "bad device name: $DEV" >&2; exit 2; }
[[ "$MAC" =~ ^([0-9a-f]{2}:){5}[0-9a-f]{2}$ ]] || { echo "bad MAC: $MAC" >&2; exit 2; }
[[ "$ADDR" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2}$ ]] || { echo "bad address: $ADDR" >&2; exit 2; }
[[ "$GW" =~ ^([0-9]{1,3}\.){3}[0-9]{1,3}$ ]] || { echo "bad gateway: $GW" >&2; exit 2; }
[[ "$LINK_LOCAL" =~ ^fe80::[0-9a-f:]+$ ]] || { echo "bad link-local address: $LINK_LOCAL" >&2; exit 2; }
dev=$DEV
[ -e "/sys/class/net/$dev" ] || { echo "no $dev in the guest" >&2; exit 1; }
# IPv4 now, over this connection (IPv6 link-local, untouched by it): its old
# connections cannot send from an address it no longer has
ip -4 -batch - <<IP
addr flush dev $dev
addr add $ADDR dev $dev
route replace default via $GW dev $dev
neigh flush dev $dev
IP
# The MAC and the link-local address after this exec has answered: frames the
# host sends to the old MAC are dropped from then on (virtio-net filters by it).
# One ip process for the three (each guest process costs 50-300 ms under TCG).
# shellcheck disable=SC2016 # expanded by the inner bash, from its arguments
setsid bash -c 'sleep 0.2
printf "link set dev %s address %s\naddr flush dev %s scope link\naddr replace %s/64 dev %s nodad\n" "$1" "$2" "$1" "$3" "$1" | ip -batch -' readdress "$dev" "$MAC" "$LINK_LOCAL" </dev/null >>"$LOG" 2>&1 &
