import pg from 'pg';
import { loadMigrations, migrationsDir } from '../migrations.js';
import type { Store } from '../store.js';
import { PostgresAdminTokens } from './admin-tokens.js';
import { PostgresBans } from './bans.js';
import { clientConfig, describeUrl } from './connection.js';
import { migrate } from './migrate.js';
import { PostgresFailureTally } from './failures.js';
import { PostgresQuota } from './quota.js';
import { PostgresUserSessions } from './user-sessions.js';
import { PostgresUsers } from './users.js';

export interface PostgresStoreOptions {
  /** Connections this Store holds at most, besides the one that listens for bans. */
  poolSize?: number;
}

/**
 * Every serving process (each worker, the primary) and every CLI run opens
 * its own Store, so this is multiplied by processes and then by nodes, against
 * PostgreSQL's max_connections (100 by default). Queries are short (a login
 * is one round trip), so a few connections per process carry the load.
 */
const DEFAULT_POOL_SIZE = 4;

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
      await migrate(client, loadMigrations(migrationsDir('postgres')));
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
    async shared(nodeId, onError) {
      const [quota, userSessions] = await Promise.all([PostgresQuota.start(pool, nodeId, onError), PostgresUserSessions.start(pool, nodeId)]);
      return {
        failures: new PostgresFailureTally(pool),
        userSessions,
        quota,
        onUserRevoked: (listener) => void bans.onUserRevoked(listener),
        stop: async () => {
          await Promise.all([quota.stop(), userSessions.stop()]);
        },
      };
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await bans.close();
      await pool.end();
    },
  };
}
