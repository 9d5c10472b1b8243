import pg from 'pg';
import { loadMigrations, migrationsDir } from '../migrations.js';
import type { Store } from '../store.js';
import { PostgresAdminTokens } from './admin-tokens.js';
import { PostgresBans } from './bans.js';
import { clientConfig, describeUrl, onConnection } from './connection.js';
import { LastLogins } from './last-logins.js';
import { migrate } from './migrate.js';
import { NodeLock, PostgresNodes } from './nodes.js';
import { Notices } from './notices.js';
import { REVOKED_CHANNEL, Revocations } from './revocations.js';
import { endUserSessionsEverywhere, SESSION_ENDS_CHANNEL, SessionEnds } from './session-ends.js';
import { USER_CHANGED_CHANNEL, UserCache } from './user-cache.js';
import { UserChanges } from './user-changes.js';
import { PostgresFailureTally } from './failures.js';
import { PostgresQuota } from './quota.js';
import { PostgresWriteLocks } from './write-locks.js';
import { PostgresUserSessions } from './user-sessions.js';
import { PostgresUsers } from './users.js';
import { WriteTurns } from './write-turns.js';

export interface PostgresStoreOptions {
  /** Connections this Store holds at most, besides the one that listens for notices. */
  poolSize?: number;
  /** Seconds a pooled connection may sit in an open transaction (storeHoldTimeout; clientConfig). */
  holdTimeout?: number;
}

/**
 * Every serving process (each worker, the primary) and every CLI run opens
 * its own Store, so this is multiplied by processes and then by nodes, against
 * PostgreSQL's max_connections (100 by default). Queries are short (a login
 * is one round trip), so a few connections per process carry the load.
 */
const DEFAULT_POOL_SIZE = 4;
/** Connections of the pool no administrator's write may take (WriteTurns): logins' and their counts'. */
const KEPT_FROM_WRITES = 2;

/**
 * The Store in PostgreSQL, shared by several nodes: connect, apply missing
 * migrations (under an advisory lock), load the bans in force and listen for
 * changes to them and to users. Rejects, naming the database without its password, when
 * any of that fails.
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<Store> {
  const poolSize = options.poolSize ?? DEFAULT_POOL_SIZE;
  const pool = new pg.Pool({ ...clientConfig(url, 'sluice', options.holdTimeout), max: poolSize });
  // An idle connection that breaks (a server restart) is dropped by the pool and the next query
  // connects anew; without a listener the 'error' event would end the process.
  pool.on('error', () => undefined);
  const notices = new Notices(url);
  const bans = new PostgresBans(pool, notices);
  const revocations = new Revocations();
  notices.subscribe(REVOKED_CHANNEL, revocations);
  const sessionEnds = new SessionEnds();
  notices.subscribe(SESSION_ENDS_CHANNEL, sessionEnds);
  const cache = new UserCache();
  const lastLogins = new LastLogins(pool);
  const changes = new UserChanges(cache);
  notices.subscribe(USER_CHANGED_CHANNEL, changes);
  try {
    await onConnection(pool, (client) => migrate(client, loadMigrations(migrationsDir('postgres'))));
    await notices.start();
  } catch (err) {
    await notices.close();
    await pool.end();
    throw new Error(`PostgreSQL store ${describeUrl(url)}: ${(err as Error).message}`, { cause: err });
  }
  return {
    kind: 'postgres',
    users: new PostgresUsers(pool, cache, lastLogins, new WriteTurns(Math.max(1, poolSize - KEPT_FROM_WRITES))),
    bans,
    tokens: new PostgresAdminTokens(pool),
    // A database that refuses writes (read only, a standby) refuses each as it comes (StoreUnavailable).
    readOnly: null,
    nodes: new PostgresNodes(pool),
    async shared(nodeId, onError) {
      const forgotten = new Set<() => void>();
      const lock = await NodeLock.take(url, nodeId, onError, () => forgotten.forEach((listener) => listener()));
      let quota: PostgresQuota;
      let userSessions: PostgresUserSessions;
      let writeLocks: PostgresWriteLocks;
      try {
        [quota, userSessions, writeLocks] = await Promise.all([
          PostgresQuota.start(pool, nodeId, onError),
          PostgresUserSessions.start(pool, nodeId, onError),
          // A give waits for the user's settles so far: the growth is counted before another node may remove the file.
          PostgresWriteLocks.start(pool, nodeId, onError, (userId) => quota.settledFor(userId)),
        ]);
      } catch (err) {
        await lock.release().catch(() => undefined);
        throw err;
      }
      return {
        failures: new PostgresFailureTally(pool),
        userSessions,
        quota,
        writeLocks,
        onUserRevoked: (listener) => revocations.on(listener),
        onUserChanged: (listener) => changes.on(listener),
        onAddressBanned: (listener) => sessionEnds.onAddress(listener),
        onUserSessionsEnded: (listener) => sessionEnds.onUser(listener),
        endUserSessions: (user, reason) => endUserSessionsEverywhere(pool, user, reason),
        onForgotten: (listener) => void forgotten.add(listener),
        stop: async () => {
          try {
            // Each says what it could not give back: one failing must not hide another's account.
            const failed = (await Promise.allSettled([quota.stop(), userSessions.stop(), writeLocks.stop()]))
              .flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
            if (failed.length === 1) throw failed[0];
            if (failed.length > 1) throw new Error(failed.map((e) => (e as Error).message ?? String(e)).join('; '), { cause: failed[0] });
          } finally {
            await lock.release().catch(() => undefined);
          }
        },
      };
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async close() {
      await lastLogins.close();
      await notices.close();
      await pool.end();
    },
  };
}
