import type { Database } from "bun:sqlite";
import { BangerError } from "../shared/errors.ts";
import type { GuestSession, SessionStatus, SessionStdinMode } from "../shared/model.ts";
import type { SessionRepo } from "../shared/session-repo.ts";

interface SessionRow {
  id: string;
  vm_id: string;
  name: string;
  backend: string;
  command: string;
  args_json: string;
  cwd: string;
  stdin_mode: string;
  status: string;
  guest_state_dir: string;
  stdout_log_path: string;
  stderr_log_path: string;
  attachable: number;
  reattachable: number;
  launch_stage: string;
  launch_message: string;
  guest_pid: number;
  exit_code: number | null;
  started_at: string;
  ended_at: string;
  created_at: string;
  updated_at: string;
}

const COLUMNS = [
  "id", "vm_id", "name", "backend", "command", "args_json", "cwd", "stdin_mode", "status", "guest_state_dir",
  "stdout_log_path", "stderr_log_path", "attachable", "reattachable", "launch_stage", "launch_message",
  "guest_pid", "exit_code", "started_at", "ended_at", "created_at", "updated_at",
];

const UPSERT = `INSERT INTO sessions (${COLUMNS.join(", ")}) VALUES (${COLUMNS.map((c) => "$" + c).join(", ")})
  ON CONFLICT(id) DO UPDATE SET ${COLUMNS.filter((c) => c !== "id" && c !== "created_at").map((c) => `${c} = excluded.${c}`).join(", ")}`;

function _rowToSession(r: SessionRow): GuestSession {
  let args: string[] = [];
  try {
    const parsed = JSON.parse(r.args_json);
    if (Array.isArray(parsed)) args = parsed.map(String);
  } catch {}
  return {
    id: r.id,
    vmId: r.vm_id,
    name: r.name,
    backend: "ssh",
    command: r.command,
    args,
    cwd: r.cwd,
    stdinMode: r.stdin_mode as SessionStdinMode,
    status: r.status as SessionStatus,
    guestStateDir: r.guest_state_dir,
    stdoutLogPath: r.stdout_log_path,
    stderrLogPath: r.stderr_log_path,
    attachable: r.attachable !== 0,
    reattachable: r.reattachable !== 0,
    launchStage: r.launch_stage,
    launchMessage: r.launch_message,
    guestPid: r.guest_pid,
    exitCode: r.exit_code,
    startedAt: r.started_at,
    endedAt: r.ended_at,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

function _params(s: GuestSession): Record<string, string | number | null> {
  return {
    $id: s.id,
    $vm_id: s.vmId,
    $name: s.name,
    $backend: s.backend,
    $command: s.command,
    $args_json: JSON.stringify(s.args),
    $cwd: s.cwd,
    $stdin_mode: s.stdinMode,
    $status: s.status,
    $guest_state_dir: s.guestStateDir,
    $stdout_log_path: s.stdoutLogPath,
    $stderr_log_path: s.stderrLogPath,
    $attachable: s.attachable ? 1 : 0,
    $reattachable: s.reattachable ? 1 : 0,
    $launch_stage: s.launchStage,
    $launch_message: s.launchMessage,
    $guest_pid: s.guestPid,
    $exit_code: s.exitCode,
    $started_at: s.startedAt,
    $ended_at: s.endedAt,
    $created_at: s.createdAt,
    $updated_at: s.updatedAt,
  };
}

/** SessionRepo over the `sessions` table (migration 3). `db` is Store.db (strict bindings). */
export function createSessionRepo(db: Database): SessionRepo {
  const upsertTx = db.transaction((s: GuestSession) => {
    db.query(UPSERT).run(_params(s) as never);
  });
  return {
    upsert(s) {
      try {
        upsertTx(s);
      } catch (e) {
        const msg = e instanceof Error ? e.message : String(e);
        if (msg.includes("UNIQUE") && msg.includes("sessions.name")) {
          throw new BangerError("E_NAME_TAKEN", `session name already taken on this vm: ${s.name}`, { cause: e });
        }
        if (msg.includes("FOREIGN KEY")) {
          throw new BangerError("E_VM_NOT_FOUND", `no vm with id ${s.vmId} for session ${s.name}`, { cause: e });
        }
        throw e;
      }
    },
    get(id) {
      const r = db.query<SessionRow, [string]>(`SELECT * FROM sessions WHERE id = ?`).get(id);
      return r ? _rowToSession(r) : null;
    },
    find(vmId, idOrName) {
      // An exact id wins over a name that happens to look like one.
      const r =
        db.query<SessionRow, [string, string]>(`SELECT * FROM sessions WHERE vm_id = ? AND id = ?`).get(vmId, idOrName) ??
        db.query<SessionRow, [string, string]>(`SELECT * FROM sessions WHERE vm_id = ? AND name = ?`).get(vmId, idOrName);
      return r ? _rowToSession(r) : null;
    },
    list(filter = {}) {
      const where: string[] = [];
      const args: string[] = [];
      if (filter.vmId) {
        where.push("vm_id = ?");
        args.push(filter.vmId);
      }
      if (filter.status && filter.status.length > 0) {
        where.push(`status IN (${filter.status.map(() => "?").join(", ")})`);
        args.push(...filter.status);
      }
      const sql = `SELECT * FROM sessions ${where.length ? "WHERE " + where.join(" AND ") : ""} ORDER BY created_at, name`;
      return db.query<SessionRow, string[]>(sql).all(...args).map(_rowToSession);
    },
    delete(id) {
      db.query(`DELETE FROM sessions WHERE id = ?`).run(id);
    },
  };
}
