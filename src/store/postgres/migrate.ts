import type pg from 'pg';
import { newerThanCode, type Migration } from '../migrations.js';

/** "sluice1" in ASCII: every node's migrator takes this same advisory lock in the database. */
const MIGRATION_LOCK = 0x736c7569636531;

/**
 * Apply what is missing, each migration in its own transaction together with
 * its bookkeeping row, so a failing file leaves the database as it was. Under
 * an advisory lock: nodes starting at once take turns, and the second finds
 * the work done. Returns the versions applied.
 */
export async function migrate(client: pg.ClientBase, migrations: readonly Migration[]): Promise<number[]> {
  // A node waits here while another migrates, and a migration may rewrite a large table: neither is the frozen
  // holder or the stuck statement the connection's limits are for (connection.ts), so this session's turn has none.
  await client.query('SET lock_timeout = 0; SET statement_timeout = 0');
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
  try {
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
    const { rows } = await client.query<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_migrations');
    const current = rows[0]?.v ?? 0;
    const newer = newerThanCode(current, migrations);
    if (newer) throw newer;
    const applied: number[] = [];
    for (const m of migrations) {
      if (m.version <= current) continue;
      await client.query('BEGIN');
      try {
        await client.query(m.sql);
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)',
          [m.version, m.name, Date.now()]);
        await client.query('COMMIT');
      } catch (err) {
        // A ROLLBACK that fails means the connection is gone, and the server rolled back with it.
        await client.query('ROLLBACK').catch(() => undefined);
        throw new Error(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, { cause: err });
      }
      applied.push(m.version);
    }
    return applied;
  } finally {
    // Fails only with the connection, and the lock (held by the session) goes with it.
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    // Back to the connection's own limits before the pool hands it on; a connection that cannot is gone.
    await client.query('RESET lock_timeout; RESET statement_timeout').catch(() => undefined);
  }
}
