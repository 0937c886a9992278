import { BangerError } from "../../../shared/errors.ts";
import type { GuestSession, VMRecord } from "../../../shared/model.ts";
import type { SessionEngine } from "../../../sessions/engine.ts";

/** Guest sessions that are E2B processes are named so (the rest of the name is the session id's start). */
export const PROCESS_SESSION_PREFIX = "e2b-";

/** What E2B knows of a process beyond its session row; kept as the session's label, so a restarted daemon has it too. */
export interface ProcessMeta {
  tag?: string;
  envs: Record<string, string>;
  pty: boolean;
}

export type ProcessSelection = { case: "pid"; value: number } | { case: "tag"; value: string } | { case: undefined; value?: undefined };

export function encodeMeta(m: ProcessMeta): string {
  return JSON.stringify(m);
}

function _decodeMeta(text: string): ProcessMeta {
  try {
    const m = JSON.parse(text) as Partial<ProcessMeta>;
    return { tag: typeof m.tag === "string" ? m.tag : undefined, envs: m.envs && typeof m.envs === "object" ? m.envs : {}, pty: m.pty === true };
  } catch {
    return { envs: {}, pty: false };
  }
}

/**
 * E2B pids are the guest pids of the sessions' processes (recorded in their
 * rows), so they stay valid across daemon restarts; tags and envs come from
 * each session's label, read once per daemon.
 */
export class ProcessTable {
  private readonly _meta = new Map<string, ProcessMeta>();

  constructor(private readonly _sessions: SessionEngine) {}

  remember(s: GuestSession, m: ProcessMeta): void {
    this._meta.set(s.id, m);
  }

  async meta(s: GuestSession): Promise<ProcessMeta> {
    const known = this._meta.get(s.id);
    if (known) return known;
    const m = _decodeMeta(await this._sessions.label(s));
    this._meta.set(s.id, m);
    return m;
  }

  /** The VM's E2B processes its store says are running. */
  running(vm: VMRecord): GuestSession[] {
    return this._sessions.list(vm.id).filter((s) => s.name.startsWith(PROCESS_SESSION_PREFIX) && s.status === "running");
  }

  /** The running process a selector names, or E_SESSION_NOT_FOUND (the SDK's NotFound). */
  async find(vm: VMRecord, sel: ProcessSelection | undefined): Promise<GuestSession> {
    const running = this.running(vm);
    if (sel?.case === "pid") {
      const s = running.find((x) => x.guestPid === sel.value);
      if (s) return s;
      throw new BangerError("E_SESSION_NOT_FOUND", `process with pid ${sel.value} not found`);
    }
    if (sel?.case === "tag") {
      for (const s of running) if ((await this.meta(s)).tag === sel.value) return s;
      throw new BangerError("E_SESSION_NOT_FOUND", `process with tag ${JSON.stringify(sel.value)} not found`);
    }
    throw new BangerError("E_BAD_REQUEST", "no process selected: give a pid or a tag");
  }
}
