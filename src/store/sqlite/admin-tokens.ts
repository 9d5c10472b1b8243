import type { Database, Statement } from 'better-sqlite3';
import type { AdminTokenRepository } from '../store.js';
import type { AdminTokenRecord } from '../records.js';
import { tokenOf, type TokenRow } from '../rows.js';
import { StoreConflict, StoreUnavailable } from '../store.js';
import { sqliteWrite, sqliteWriteSoon } from './write-errors.js';

/**
 * The admin API's tokens, by name, as the SHA-256 of each (admin/tokens.ts
 * makes and hashes them): written by the CLI, read by the server at every
 * request, so a token removed is refused at once.
 */
export class SqliteAdminTokens implements AdminTokenRepository {
  private readonly q: Record<'add' | 'remove' | 'byHash' | 'used' | 'all', Statement>;

  constructor(db: Database) {
    this.q = {
      add: db.prepare('INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?)'),
      // Names compared without case, as user names (migration 017's index keeps them apart so).
      remove: db.prepare('DELETE FROM admin_tokens WHERE name = ? COLLATE NOCASE'),
      byHash: db.prepare('SELECT name FROM admin_tokens WHERE hash = ?'),
      used: db.prepare('UPDATE admin_tokens SET last_used = ? WHERE name = ?'),
      all: db.prepare('SELECT name, created_at, last_used FROM admin_tokens ORDER BY name'),
    };
  }

  /** False: a token of that name, in any case, exists already. */
  async add(name: string, hash: Buffer): Promise<boolean> {
    try {
      await sqliteWriteSoon(() => this.q.add.run(name, hash, Date.now()));
      return true;
    } catch (err) {
      if (err instanceof StoreConflict) return false;
      throw err;
    }
  }

  /** False: there was none of that name, in any case. */
  async remove(name: string): Promise<boolean> {
    return (await sqliteWriteSoon(() => this.q.remove.run(name))).changes > 0;
  }

  /** The name of the token with this hash, noted as used now; null: no such token. */
  async use(hash: Buffer): Promise<string | null> {
    const row = this.q.byHash.get(hash) as { name: string } | undefined;
    if (!row) return null;
    try {
      sqliteWrite(() => this.q.used.run(Date.now(), row.name));
    } catch (err) {
      // The token is good; only the note of its use waits for room: a full disk (or the CLI holding the
      // database) refused every request with a token, the monitoring of that disk included (found by a review).
      if (!(err instanceof StoreUnavailable)) throw err;
    }
    return row.name;
  }

  async all(): Promise<AdminTokenRecord[]> {
    return (this.q.all.all() as TokenRow[]).map(tokenOf);
  }
}
