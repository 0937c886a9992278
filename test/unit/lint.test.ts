import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ESLint, type Linter } from "eslint";
import tseslint from "typescript-eslint";

const DIR = join(import.meta.dir, "../fixtures/lint");
const FIXTURE = join(DIR, "promises.ts");
// a path, not a literal specifier: the config is plain JS (eslint loads it under Node) and has no types
const CONFIG = join(import.meta.dir, "../../eslint.config.js");

/** `line rule-id` for each line of a fixture marked `// BAD rule-id`. */
function marked(file: string): string[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .flatMap((l, i) => {
      const m = /\/\/ BAD (\S+)/.exec(l);
      return m ? [`${i + 1} ${m[1]}`] : [];
    });
}

describe("npm run lint's promise rules", () => {
  // proves the check can fail: the rules `npm run lint` enforces, with type information, on a fixture
  test(
    "report a floating promise, a voided one and an async callback where a void one is expected, and nothing else",
    async () => {
      const { promiseRules } = (await import(CONFIG)) as { promiseRules: Linter.RulesRecord };
      const eslint = new ESLint({
        cwd: DIR,
        overrideConfigFile: true,
        overrideConfig: {
          files: ["**/*.ts"],
          languageOptions: { parser: tseslint.parser, parserOptions: { project: join(DIR, "tsconfig.json"), tsconfigRootDir: DIR } },
          plugins: { "@typescript-eslint": tseslint.plugin },
          rules: promiseRules,
        },
      });
      const [result] = await eslint.lintFiles([FIXTURE]);
      const got = result!.messages.map((m) => `${m.line} ${m.ruleId ?? `fatal: ${m.message}`}`);
      const want = readFileSync(FIXTURE, "utf8")
        .split("\n")
        .flatMap((l, i) => {
          const m = /\/\/ BAD (\S+)/.exec(l);
          return m ? [`${i + 1} ${m[1]}`] : [];
        });
      expect(want).toEqual(["9 @typescript-eslint/no-floating-promises", "10 @typescript-eslint/no-floating-promises", "11 @typescript-eslint/no-misused-promises"]);
      expect(got).toEqual(want);
    },
    30_000,
  );
});

describe("npm run lint's host seam rules", () => {
  // proves the seam can fail: node:fs / child_process (imported, required, import()ed), Date.now, process.env and Bun.spawn outside src/host
  test(
    "report each way past src/host, and nothing else",
    async () => {
      const { seamRules } = (await import(CONFIG)) as { seamRules: Linter.RulesRecord };
      const eslint = new ESLint({
        cwd: DIR,
        overrideConfigFile: true,
        overrideConfig: { files: ["**/*.ts"], languageOptions: { parser: tseslint.parser }, rules: seamRules },
      });
      const file = join(DIR, "seam.ts");
      const [result] = await eslint.lintFiles([file]);
      const got = result!.messages.map((m) => `${m.line} ${m.ruleId ?? `fatal: ${m.message}`}`);
      const want = marked(file);
      expect(want.length).toBe(10);
      expect(got).toEqual(want);
      // each message says where to go instead
      for (const m of result!.messages) expect(m.message).toMatch(/src\/host|plugin-api/);
    },
    30_000,
  );
});
