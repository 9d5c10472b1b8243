import type pg from 'pg';
import type { AdminTokenRecord } from '../records.js';
import { tokenOf, type TokenRow } from '../rows.js';
import type { AdminTokenRepository } from '../store.js';
import { cannotWriteNow, uniqueViolation } from './connection.js';

/** The admin API's tokens, as the SQLite AdminTokenStore keeps them: only each token's SHA-256. */
export class PostgresAdminTokens implements AdminTokenRepository {
  constructor(private readonly pool: pg.Pool) {}

  async add(name: string, hash: Buffer): Promise<boolean> {
    try {
      await this.pool.query('INSERT INTO admin_tokens (name, hash, created_at) VALUES ($1, $2, $3)', [name, hash, Date.now()]);
      return true;
    } catch (err) {
      if (uniqueViolation(err, 'admin_tokens_pkey') || uniqueViolation(err, 'admin_tokens_name_nocase')) return false;
      throw err;
    }
  }

  async remove(name: string): Promise<boolean> {
    // Names compared without case, as user names (migration 017's index keeps them apart so).
    const r = await this.pool.query('DELETE FROM admin_tokens WHERE lower(name) = lower($1)', [name]);
    return (r.rowCount ?? 0) > 0;
  }

  async use(hash: Buffer): Promise<string | null> {
    // The note first, with the look-up: a use waiting for the row a removal holds finds no token once that commits
    // (a look-up before the note took it though its removal had committed: found by a review of 3a0a4c8).
    try {
      const { rows } = await this.pool.query<{ name: string }>(
        'UPDATE admin_tokens SET last_used = $1 WHERE hash = $2 RETURNING name', [Date.now(), hash]);
      return rows[0]?.name ?? null;
    } catch (err) {
      if (!cannotWriteNow(err)) throw err;
    }
    // The token is good whether or not its use can be noted: as SQLite's, a database that cannot take the
    // note now (read only, its disk full, the row locked past the limits) must not refuse every request
    // with a token, the monitoring of that database included.
    const { rows } = await this.pool.query<{ name: string }>('SELECT name FROM admin_tokens WHERE hash = $1', [hash]);
    return rows[0]?.name ?? null;
  }

  async all(): Promise<AdminTokenRecord[]> {
    const { rows } = await this.pool.query<TokenRow>('SELECT name, created_at, last_used FROM admin_tokens ORDER BY name');
    return rows.map(tokenOf);
  }
}
