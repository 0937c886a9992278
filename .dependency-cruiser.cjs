// The layers of banger (README "Architecture"): every arrow points down.
//
//   cli ──► client, doctor, files, host, shared   (and cli/daemon.ts ··► daemon/main.ts by import(): `banger daemon`)
//   daemon ──► core, plugins/index, sessions, workspace, files, store, handles, vmm, doctor, host, shared
//   plugins/<x> ──► src/plugin-api.ts (and their own files) only
//   plugin-api ──► core, vmm, host, shared
//   sessions, workspace ──► core, store, host, shared   (workspace may use sessions)
//   files ──► host, shared   (guest and host halves of file copies; used by the daemon and the CLI)
//   core ──► store, handles, vmm, host, shared
//   handles ──► vmm, host, shared
//   vmm, doctor ──► host, shared
//   store, host ──► shared
//   shared ──► nothing of ours
//
// `npm run lint` runs this; a new arrow is a decision: change the picture here and in the README.
const ours = "^(src|plugins)/";
/** A layer may import only these folders (plus node builtins and npm packages). */
const only = (name, from, allowed) => ({
  name,
  severity: "error",
  comment: `${from} may import only ${allowed.join(", ")}`,
  from: { path: from },
  to: { path: ours, pathNot: allowed.map((a) => `^${a}`) },
});

module.exports = {
  forbidden: [
    { name: "no-circular", severity: "error", comment: "layers form a DAG", from: {}, to: { circular: true } },
    only("shared-is-the-bottom", "^src/shared/", ["src/shared/"]),
    only("host", "^src/host/", ["src/host/", "src/shared/"]),
    only("store", "^src/store/", ["src/store/", "src/shared/"]),
    only("vmm", "^src/vmm/", ["src/vmm/", "src/host/", "src/shared/"]),
    only("doctor", "^src/doctor/", ["src/doctor/", "src/vmm/", "src/host/", "src/shared/"]),
    only("handles", "^src/handles/", ["src/handles/", "src/vmm/", "src/host/", "src/shared/"]),
    only("sessions", "^src/sessions/", ["src/sessions/", "src/core/", "src/store/", "src/host/", "src/shared/"]),
    only("files", "^src/files/", ["src/files/", "src/host/", "src/shared/"]),
    only("workspace", "^src/workspace/", ["src/workspace/", "src/sessions/", "src/core/", "src/host/", "src/shared/"]),
    only("core", "^src/core/", ["src/core/", "src/store/", "src/handles/", "src/vmm/", "src/host/", "src/shared/"]),
    only("plugin-api", "^src/plugin-api\\.ts$", ["src/core/", "src/vmm/", "src/host/", "src/shared/"]),
    only("client", "^src/client/", ["src/client/", "src/host/", "src/shared/", "src/version\\.ts$"]),
    only("cli", "^src/cli/", ["src/cli/", "src/client/", "src/doctor/", "src/files/", "src/host/", "src/shared/", "src/version\\.ts$", "src/daemon/main\\.ts$"]),
    {
      name: "plugins-use-the-public-api",
      severity: "error",
      comment: "a plugin imports only src/plugin-api.ts and its own files: what a user's plugin can do, a built-in can do",
      from: { path: "^plugins/([^/]+)/" },
      to: { path: ours, pathNot: ["^src/plugin-api\\.ts$", "^plugins/$1/"] },
    },
    only("plugin-index", "^plugins/index\\.ts$", ["plugins/[^/]+/index\\.ts$", "src/plugin-api\\.ts$"]),
    {
      name: "nothing-below-imports-the-daemon",
      severity: "error",
      comment: "the daemon is the top: only the CLI's entry point starts it",
      from: { path: ours, pathNot: ["^src/daemon/", "^src/cli/daemon\\.ts$"] },
      to: { path: "^src/daemon/" },
    },
    {
      name: "the-cli-loads-the-daemon-only-for-banger-daemon",
      severity: "error",
      comment: "cli/daemon.ts reaches the daemon by import() inside `banger daemon` only: its other subcommands, and every command that loads that file, must not load the daemon (test/unit/cli-graph.test.ts)",
      from: { path: "^src/cli/" },
      to: { path: "^src/daemon/", dynamic: false },
    },
    {
      name: "connect-and-protobuf-are-the-daemons",
      severity: "error",
      comment: "Connect and protobuf serve envd (src/daemon/e2b); whatever the CLI loads must not import them (types alone are erased)",
      from: { path: ours, pathNot: "^src/daemon/" },
      to: { path: "node_modules/(@connectrpc|@bufbuild)/", dependencyTypesNot: ["type-only"] },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.json" },
    exclude: { path: "^(test|dist)/" },
  },
};
