import { expect, test } from "bun:test";
import { exitReasonFromConsole } from "../../src/core/exit-reason.ts";

test("why a VM's process ended, from its console's end: a panic (the last one), a power-off, a reboot; else nothing", () => {
  expect(exitReasonFromConsole("x\n[ 1.9] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n[ 2.0] CPU: 0\n")).toBe(
    "the guest kernel panicked: VFS: Unable to mount root fs on unknown-block(0,0)",
  );
  expect(exitReasonFromConsole("Kernel panic - not syncing: one\nKernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n")).toBe(
    "the guest kernel panicked: Attempted to kill init! exitcode=0x00000100",
  );
  expect(exitReasonFromConsole("[  OK  ] Reached target Power-Off.\n[ 9.1] reboot: Power down\n")).toBe("the guest powered off");
  expect(exitReasonFromConsole("[ 9.1] reboot: Restarting system\n")).toBe("the guest rebooted (a VM ends on reboot: start it again)");
  expect(exitReasonFromConsole("login: \n")).toBeNull();
  expect(exitReasonFromConsole("")).toBeNull();
});
