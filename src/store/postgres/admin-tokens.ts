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
      if (uniqueViolation(err, 'admin_tokens_pkey')) return false;
      throw err;
    }
  }

  async remove(name: string): Promise<boolean> {
    const r = await this.pool.query('DELETE FROM admin_tokens WHERE name = $1', [name]);
    return (r.rowCount ?? 0) > 0;
  }

  async use(hash: Buffer): Promise<string | null> {
    const { rows } = await this.pool.query<{ name: string }>('SELECT name FROM admin_tokens WHERE hash = $1', [hash]);
    const name = rows[0]?.name;
    if (name === undefined) return null;
    // The token is good whether or not its use can be noted: as SQLite's, a database that cannot take the
    // note now (read only, its disk full, the row locked past the limits) must not refuse every request
    // with a token, the monitoring of that database included. One round trip more, on the API only.
    await this.pool.query('UPDATE admin_tokens SET last_used = $1 WHERE name = $2', [Date.now(), name]).catch((err: unknown) => {
      if (!cannotWriteNow(err)) throw err;
    });
    return name;
  }

  async all(): Promise<AdminTokenRecord[]> {
    const { rows } = await this.pool.query<TokenRow>('SELECT name, created_at, last_used FROM admin_tokens ORDER BY name');
    return rows.map(tokenOf);
  }
}
