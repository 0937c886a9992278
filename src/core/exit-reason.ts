/**
 * Why a VM's process ended by itself, from the end of its serial console:
 * a kernel panic (QEMU runs with -no-reboot and the kernel with panic=-1,
 * Firecracker with panic=1, so a panic ends the process), a power-off or a
 * reboot the guest asked for. Null when the console says none of these (the
 * process was killed, or crashed on its own).
 */
export function exitReasonFromConsole(tail: string): string | null {
  const panics = [...tail.matchAll(/Kernel panic - not syncing: ([^\r\n]*)/g)];
  const panic = panics.at(-1)?.[1]?.trim();
  if (panic !== undefined) return `the guest kernel panicked: ${panic.slice(0, 200)}`;
  if (/reboot: Power down/.test(tail)) return "the guest powered off";
  if (/reboot: Restarting system/.test(tail)) return "the guest rebooted (a VM ends on reboot: start it again)";
  return null;
}
