import type { Database } from "bun:sqlite";
import type { E2BKeyInfo, E2BSandboxRecord } from "../shared/e2b.ts";

/** The E2B front door's rows (migrations 10 and 12): API keys by hash, sandboxes, listener settings, pending sandboxes. */
export interface E2BRepo {
  addKey(k: E2BKeyInfo & { hash: string }): void;
  /** The key whose hash this is, if any. */
  keyByHash(hash: string): E2BKeyInfo | null;
  listKeys(): E2BKeyInfo[];
  /** By id or name: the key removed, or null when none matched. */
  removeKey(idOrName: string): E2BKeyInfo | null;
  /** Record the sandbox (and that it is no longer pending: one transaction). */
  putSandbox(s: E2BSandboxRecord): void;
  getSandbox(id: string): E2BSandboxRecord | null;
  listSandboxes(): E2BSandboxRecord[];
  deleteSandbox(id: string): void;
  /** A sandbox about to be made: its VM (named id) is created next; putSandbox or clearPending ends it. */
  addPending(id: string, startedAt: string): void;
  clearPending(id: string): void;
  listPending(): { id: string; startedAt: string }[];
  getSetting(key: string): string | null;
  /** null removes it. */
  setSetting(key: string, value: string | null): void;
}

type _KeyRow = { id: string; name: string; prefix: string; created_at: string };
const _key = (r: _KeyRow | null): E2BKeyInfo | null => (r ? { id: r.id, name: r.name, prefix: r.prefix, createdAt: r.created_at } : null);

export function createE2BRepo(db: Database): E2BRepo {
  const parse = (r: { data: string } | null): E2BSandboxRecord | null => (r ? (JSON.parse(r.data) as E2BSandboxRecord) : null);
  return {
    addKey(k) {
      db.query(`INSERT INTO e2b_keys (id, name, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?)`).run(k.id, k.name, k.prefix, k.hash, k.createdAt);
    },
    keyByHash: (hash) => _key(db.query<_KeyRow, [string]>(`SELECT id, name, prefix, created_at FROM e2b_keys WHERE hash = ?`).get(hash)),
    listKeys: () => db.query<_KeyRow, []>(`SELECT id, name, prefix, created_at FROM e2b_keys ORDER BY created_at, id`).all().map((r) => _key(r)!),
    removeKey(idOrName) {
      const k = _key(db.query<_KeyRow, [string, string]>(`SELECT id, name, prefix, created_at FROM e2b_keys WHERE id = ? OR name = ? ORDER BY id = ?1 DESC LIMIT 1`).get(idOrName, idOrName));
      if (k) db.query(`DELETE FROM e2b_keys WHERE id = ?`).run(k.id);
      return k;
    },
    putSandbox: db.transaction((s: E2BSandboxRecord) => {
      db.query(
        `INSERT INTO e2b_sandboxes (id, vm_id, template_id, data, started_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET data = excluded.data`,
      ).run(s.id, s.vmId, s.templateId, JSON.stringify(s), s.startedAt);
      db.query(`DELETE FROM e2b_pending WHERE id = ?`).run(s.id);
    }),
    addPending(id, startedAt) {
      db.query(`INSERT INTO e2b_pending (id, started_at) VALUES (?, ?) ON CONFLICT(id) DO NOTHING`).run(id, startedAt);
    },
    clearPending(id) {
      db.query(`DELETE FROM e2b_pending WHERE id = ?`).run(id);
    },
    listPending: () => db.query<{ id: string; started_at: string }, []>(`SELECT id, started_at FROM e2b_pending ORDER BY started_at, id`).all().map((r) => ({ id: r.id, startedAt: r.started_at })),
    getSandbox: (id) => parse(db.query<{ data: string }, [string]>(`SELECT data FROM e2b_sandboxes WHERE id = ?`).get(id)),
    listSandboxes: () => db.query<{ data: string }, []>(`SELECT data FROM e2b_sandboxes ORDER BY started_at, id`).all().map((r) => parse(r)!),
    deleteSandbox(id) {
      db.query(`DELETE FROM e2b_sandboxes WHERE id = ?`).run(id);
    },
    getSetting: (key) => db.query<{ value: string }, [string]>(`SELECT value FROM e2b_settings WHERE key = ?`).get(key)?.value ?? null,
    setSetting(key, value) {
      if (value === null) db.query(`DELETE FROM e2b_settings WHERE key = ?`).run(key);
      else db.query(`INSERT INTO e2b_settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`).run(key, value);
    },
  };
}
