# shellcheck shell=sh
# banger: `vm commit` runs this in a chroot of the copied system disk, last,
# so the image carries nothing that belonged to the VM it came from: SSH
# host keys and authorized keys, its name, shell histories, logs, its
# sessions' state, temp files.
# Each VM from the image gets its own again from its seed at boot. Plain sh
# and builtins + rm: it must work on any image (busybox ones too).
rm -f /root/.ssh/authorized_keys /etc/ssh/ssh_host_*
# a link (banger's init: to the seed's key in /run) holds no key: kept, so a VM need not make it again at boot
for f in /etc/dropbear/dropbear_*_host_key; do
  [ -L "$f" ] || rm -f "$f"
done
for h in /root /home/*; do
  [ -d "$h" ] || continue
  rm -f "$h/.bash_history" "$h/.ash_history" "$h/.sh_history" "$h/.lesshst" "$h/.viminfo" "$h/.python_history" "$h/.node_repl_history"
  [ -f "$h/.ssh/authorized_keys" ] && rm -f "$h/.ssh/authorized_keys"
done
rm -rf /var/log/banger
# its sessions' state: their commands (with -e values), stdin pipes and output logs
rm -rf /var/lib/banger/sessions
# the other logs are kept as files (daemons expect them) but emptied
for f in /var/log/*.log /var/log/*/*.log /var/log/wtmp /var/log/btmp /var/log/lastlog; do
  [ -f "$f" ] && : >"$f"
done
rm -rf /tmp/* /tmp/.[!.]* /var/tmp/* 2>/dev/null
[ -f /etc/machine-id ] && : >/etc/machine-id
echo banger >/etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >/etc/hosts
exit 0
