import type { ArgsDef, CommandDef } from "citty";

/**
 * citty's defineCommand (an identity function for types) without loading
 * citty: its parser pulls in node:util, about 1.5 ms of every command's
 * start-up, and most commands never need it (see main.ts simpleArgs).
 */
export function defineCommand<const T extends ArgsDef = ArgsDef>(def: CommandDef<T>): CommandDef<T> {
  return def;
}
