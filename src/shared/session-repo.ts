import type { GuestSession, SessionStatus } from "./model.ts";

/** Durable session records (the `sessions` table). */
export interface SessionRepo {
  /** Insert or replace by id; throws BangerError E_NAME_TAKEN when (vmId, name) is taken by another session. */
  upsert(session: GuestSession): void;
  get(id: string): GuestSession | null;
  /** By id or by name within one VM. */
  find(vmId: string, idOrName: string): GuestSession | null;
  /** All sessions, or one VM's; oldest first. */
  list(filter?: { vmId?: string; status?: SessionStatus[] }): GuestSession[];
  delete(id: string): void;
}
