import pg from 'pg';
import { loadMigrations, migrationsDir } from '../migrations.js';
import type { Store } from '../store.js';
import { PostgresAdminTokens } from './admin-tokens.js';
import { PostgresBans } from './bans.js';
import { clientConfig, describeUrl } from './connection.js';
import { migrate } from './migrate.js';
import { PostgresUsers } from './users.js';

export interface PostgresStoreOptions {
  /** Connections this node holds at most; every node has its own pool. */
  poolSize?: number;
  /** Tests only: another set of migrations. */
  migrations?: string;
}

const DEFAULT_POOL_SIZE = 10;

/**
 * The Store in PostgreSQL, shared by several nodes: connect, apply missing
 * migrations (under an advisory lock), load the bans in force and listen for
 * changes to them. Rejects, naming the database without its password, when
 * any of that fails.
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<Store> {
  const pool = new pg.Pool({ ...clientConfig(url), max: options.poolSize ?? DEFAULT_POOL_SIZE });
  // An idle connection that breaks (a server restart) is dropped by the pool and the next query
  // connects anew; without a listener the 'error' event would end the process.
  pool.on('error', () => undefined);
  let bans: PostgresBans;
  try {
    const client = await pool.connect();
    try {
      await migrate(client, loadMigrations(options.migrations ?? migrationsDir('postgres')));
    } finally {
      client.release();
    }
    bans = await PostgresBans.open(pool, url);
  } catch (err) {
    await pool.end();
    throw new Error(`PostgreSQL store ${describeUrl(url)}: ${(err as Error).message}`, { cause: err });
  }
  return {
    kind: 'postgres',
    users: new PostgresUsers(pool),
    bans,
    tokens: new PostgresAdminTokens(pool),
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await bans.close();
      await pool.end();
    },
  };
}
