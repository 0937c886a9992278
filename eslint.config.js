// Type-aware checks for promises only (issue 13): a promise nobody awaits or
// catches, or one handed to a callback whose caller ignores what it returns,
// turns a rejection into an unhandled one, and an unhandled rejection kills
// the daemon. Style rules stay off on purpose: this config is for bugs.
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

/** The rules `npm run lint` enforces; test/unit/lint.test.ts lints a fixture with these same ones. */
export const promiseRules = {
  // ignoreVoid off: `void p` still leaves p's rejection unhandled; `void p.catch(log)` passes.
  "@typescript-eslint/no-floating-promises": ["error", { ignoreVoid: false }],
  "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: true, checksConditionals: true, checksSpreads: true }],
};

const _HOST = "src/host/types.ts is the only door to the host";
/**
 * The host seam (issue 14): side effects go through src/host (Host: exec, fs, clock, …) and the
 * environment is read in src/host/config.ts, so tests pass fakes. Applied to src/ and plugins/
 * except src/host/ itself; test/unit/lint.test.ts proves each one fires on a fixture.
 */
const _FS = `use host.fs (or a function in src/host that takes paths): ${_HOST}`;
const _PROC = `use host.exec (or a function in src/host, such as src/host/tar.ts): ${_HOST}`;
const _MODS = [
  ...["node:fs", "node:fs/promises", "fs", "fs/promises"].map((name) => ({ name, message: _FS })),
  ...["node:child_process", "child_process"].map((name) => ({ name, message: _PROC })),
];
const _MOD_RE = "/^(node:)?(fs|fs\\u002Fpromises|child_process)$/";
export const seamRules = {
  "no-restricted-imports": ["error", { paths: _MODS }],
  // require()/import() of the same modules (the CLI loads node:fs lazily, so a static import rule alone would miss it)
  "no-restricted-syntax": [
    "error",
    { selector: `CallExpression[callee.name='require'][arguments.0.value=${_MOD_RE}]`, message: `${_FS} (lazily: \`await import("../host/fs.ts")\`)` },
    { selector: `ImportExpression[source.value=${_MOD_RE}]`, message: `${_FS} (lazily: \`await import("../host/fs.ts")\`)` },
  ],
  "no-restricted-properties": [
    "error",
    { object: "Bun", property: "spawn", message: _PROC },
    { object: "Bun", property: "spawnSync", message: _PROC },
    { object: "process", property: "env", message: `read the environment through src/host/config.ts (config, environ(), configFrom(env)); plugins get them from src/plugin-api.ts` },
    { object: "Date", property: "now", message: `use host.clock.now() (or nowMs() from src/host/clock.ts where there is no Host): ${_HOST}` },
  ],
};

export default defineConfig(
  { ignores: ["dist/**", "node_modules/**", ".cache/**", "src/daemon/e2b/gen/**"] },
  {
    files: ["src/**/*.ts", "plugins/**/*.ts", "scripts/**/*.ts"],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { "@typescript-eslint": tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: promiseRules,
  },
  {
    files: ["src/**/*.ts", "plugins/**/*.ts"],
    ignores: ["src/host/**"],
    rules: seamRules,
  },
);
