/** One field of /proc/meminfo's text (`MemAvailable: 123 kB`) in bytes; NaN when it is not there. */
export function meminfoBytes(text: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
  return m ? Number(m[1]) * 1024 : NaN;
}
