import { defineCommand } from "citty";

export default defineCommand({
  meta: { name: "session", description: "Long-lived guest processes (start, send, logs, attach)" },
  subCommands: {},
});
