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

export default defineConfig(
  { ignores: ["dist/**", "node_modules/**", ".cache/**"] },
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
);
