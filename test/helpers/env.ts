/**
 * Run `fn` with these environment variables set (undefined: unset), then put
 * each back as it was, also when `fn` throws. For code that reads the
 * environment as it starts (e.g. the CLI's early read resolving BANGER_HOME).
 */
export function withEnv<T>(vars: Record<string, string | undefined>, fn: () => T): T {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const put = (values: Record<string, string | undefined>) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  put(vars);
  try {
    return fn();
  } finally {
    put(before);
  }
}
