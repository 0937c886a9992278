/**
 * Pure helpers for the raw-qemu baseline of the boot bench: read banger's
 * exact qemu argv back from the driver's qemu.log and swap the per-VM
 * resources. Tested in test/unit/bench-qemu-argv.test.ts.
 */

// qemu options that take no value; everything else in banger's argv takes exactly one
const _QEMU_FLAGS = new Set(["-nodefaults", "-no-user-config", "-no-reboot", "-daemonize", "-S", "-snapshot", "-no-shutdown", "-enable-kvm", "-nographic"]);

/**
 * qemu's argv from the first line of the driver's qemu.log
 * (`# /usr/bin/qemu-system-x86_64 -name … -append console=ttyS0 quiet … -drive …`).
 * The driver joins argv with spaces, so an option value with spaces (the
 * kernel command line) is rebuilt: every option takes one value except the
 * known flags, and a value runs until the next token that starts with "-"
 * and is followed by the expected shape (-netdev's until its -device). Returns [binary, ...args].
 */
export function parseQemuLogArgv(log: string): string[] {
  const first = log.split("\n").find((l) => l.startsWith("# "));
  if (!first) throw new Error("qemu.log has no '# <command line>' header");
  const tokens = first.slice(2).trim().split(" ").filter((t) => t !== "");
  const [bin, ...rest] = tokens;
  if (!bin || !/qemu/.test(bin)) throw new Error(`qemu.log header does not start with a qemu binary: ${first.slice(0, 80)}`);
  const argv = [bin];
  let i = 0;
  while (i < rest.length) {
    const opt = rest[i]!;
    if (!opt.startsWith("-")) throw new Error(`unexpected token in qemu.log at ${i}: ${opt}`);
    argv.push(opt);
    i++;
    if (_QEMU_FLAGS.has(opt)) continue;
    if (i >= rest.length) throw new Error(`option ${opt} has no value in qemu.log`);
    // a value with spaces (only -append in banger's argv) continues up to the next option token
    const parts = [rest[i]!];
    i++;
    if (opt === "-append") {
      while (i < rest.length && !/^-[a-z]/.test(rest[i]!)) parts.push(rest[i++]!);
    } else if (opt === "-netdev") {
      // net-user's egress guestfwd carries a relay command (`cmd:socat -lf … FD:0,,shut-down …`): its words
      // include dashes, so the value runs to the -device that always follows a -netdev in banger's argv
      while (i < rest.length && rest[i] !== "-device") parts.push(rest[i++]!);
    }
    argv.push(parts.join(" "));
  }
  return argv;
}

/** What a raw (banger-less) boot changes in banger's argv. */
export interface RawBootRewrite {
  /** The copy of the system disk to boot (replaces the first -drive file=). */
  disk: string;
  /** The loopback port the guest's :22 is forwarded to. */
  sshPort: number;
  serialLog: string;
  qmpSock: string;
  pidfile: string;
  /** Optional: a copy of the seed initrd. */
  initrd?: string;
  /** -name value (default "bench-raw"). */
  name?: string;
}

function _qemuEscape(v: string): string {
  return v.replaceAll(",", ",,");
}

/**
 * banger's exact qemu argv with only the per-VM resources swapped: disk,
 * forwarded port, serial file, QMP socket, pidfile, name (and initrd when
 * given). Throws when an expected option is missing, so a driver change that
 * would make the comparison unfair is noticed instead of silently ignored.
 */
export function rewriteQemuArgv(argv: readonly string[], r: RawBootRewrite): string[] {
  const out = [...argv];
  const seen = new Set<string>();
  for (let i = 1; i < out.length - 1; i++) {
    const opt = out[i]!;
    const val = out[i + 1]!;
    if (opt === "-name") out[i + 1] = r.name ?? "bench-raw";
    else if (opt === "-serial" && val.startsWith("file:")) out[i + 1] = `file:${r.serialLog}`;
    else if (opt === "-qmp" && val.startsWith("unix:")) out[i + 1] = `unix:${_qemuEscape(r.qmpSock)},server=on,wait=off`;
    else if (opt === "-pidfile") out[i + 1] = r.pidfile;
    else if (opt === "-initrd" && r.initrd) out[i + 1] = r.initrd;
    else if (opt === "-drive" && !seen.has("-drive")) {
      if (!/(^|,)file=/.test(val)) throw new Error(`first -drive has no file=: ${val}`);
      // file=… may hold escaped commas (",,"); replace up to the first single comma
      out[i + 1] = val.replace(/(^|,)file=(?:[^,]|,,)*/, `$1file=${_qemuEscape(r.disk)}`);
    } else if (opt === "-netdev" && /hostfwd=tcp:[^:]*:\d+-:22/.test(val)) {
      out[i + 1] = val.replace(/hostfwd=tcp:([^:]*):\d+-:22/, `hostfwd=tcp:$1:${r.sshPort}-:22`);
    } else continue;
    seen.add(opt);
    i++;
  }
  const need = ["-serial", "-qmp", "-pidfile", "-drive", "-netdev"];
  const missing = need.filter((o) => !seen.has(o));
  if (missing.length) throw new Error(`banger's qemu argv lacks what a raw boot rewrites: ${missing.join(", ")}`);
  return out;
}

/** The value of `-opt` in an argv, if present. */
export function argvValue(argv: readonly string[], opt: string): string | undefined {
  const i = argv.indexOf(opt);
  return i >= 0 ? argv[i + 1] : undefined;
}
