import { expect, test } from "bun:test";
import { autoWarmEnabled } from "../../src/daemon/config.ts";
import { daemonPaths } from "../../src/shared/paths.ts";
import { fakeFS } from "../helpers/fakes.ts";

const paths = daemonPaths("/state");
const withConfig = (text?: string) => fakeFS(text === undefined ? {} : { [paths.configJson]: text });

test("auto-warm: on by default; config.json autoWarm decides; BANGER_AUTO_WARM 0/1 overrides it (anything else is unset)", async () => {
  const cases: [string | undefined, string | undefined, boolean][] = [
    [undefined, undefined, true],
    ["{}", undefined, true],
    ['{"autoWarm": false}', undefined, false],
    ['{"autoWarm": true}', undefined, true],
    ['{"autoWarm": false}', "1", true],
    ['{"autoWarm": true}', "0", false],
    [undefined, "0", false],
    ['{"autoWarm": false}', "", false],
    ['{"autoWarm": false}', "yes", false],
  ];
  for (const [cfg, env, want] of cases) {
    expect([cfg, env, await autoWarmEnabled(paths, withConfig(cfg), { BANGER_AUTO_WARM: env })]).toEqual([cfg, env, want]);
  }
});

test("auto-warm: a config.json autoWarm that is not a boolean, or not JSON, is refused with the file named", async () => {
  await expect(autoWarmEnabled(paths, withConfig('{"autoWarm": "no"}'), {})).rejects.toThrow(`${paths.configJson}: "autoWarm" must be true or false`);
  await expect(autoWarmEnabled(paths, withConfig("{"), {})).rejects.toThrow(paths.configJson);
});
