import pg from 'pg';
import { SluiceError } from '../../session/errors.js';
import { StoreUnavailable } from '../store.js';

const INT8 = 20;

/**
 * BIGINT columns (unix-ms times, byte counts) and COUNT(*) as numbers, as
 * SQLite returns them: pg hands out strings by default for fear of values
 * past 2^53, which no time or size here reaches. Per connection, so nothing
 * else in the process that uses pg is affected.
 */
const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8 && format !== 'binary' ? Number : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

/**
 * A node that stops running in the middle of a transaction (SIGSTOP, a
 * paused VM, a hung process) keeps the locks it took, and PostgreSQL never
 * ends a session that is merely idle in a transaction: a node frozen in a
 * change of a user held that user's row (in a change of a home, the lock
 * every change of a home takes) from every node for as long as it was
 * frozen, their uploads' grants, logins' counts and admin writes waiting
 * all that time. sluice's transactions are a few statements sent back to
 * back, with no file, hash or network work between them, over in
 * milliseconds: only a node that stopped running sits in one for seconds,
 * so PostgreSQL ends such a session (its transaction rolled back, its locks
 * given up) after the hold timeout (storeHoldTimeout, in seconds).
 */
const HOLD_TIMEOUT_S = 15;
/**
 * A wait for a lock outlasts the hold timeout, so a write queued behind a
 * frozen node goes through once PostgreSQL ends the holder; one behind a
 * holder PostgreSQL does not end (an operator's open transaction in psql)
 * then fails as StoreUnavailable rather than keep its pooled connection for good.
 */
const LOCK_WAIT_BEYOND_HOLD_MS = 5_000;
/** Above both, a last bound on a statement that never answers. */
const STATEMENT_BEYOND_HOLD_MS = 15_000;
/**
 * TCP keepalive after this long without traffic (Node probes every second
 * from then on, ten times): a database host that vanished without a word
 * (powered off, a network cut) is noticed on an idle connection, which the
 * pool then drops, instead of by the next query after hours.
 */
const KEEPALIVE_IDLE_MS = 10_000;

/**
 * Connection settings for `url`; the password stays inside pg's config,
 * never in a message of ours. The limits are asked for in the startup
 * message, so they hold from the connection's first statement on.
 */
export function clientConfig(url: string, applicationName = 'sluice', holdTimeoutS = HOLD_TIMEOUT_S): pg.ClientConfig {
  const holdMs = holdTimeoutS * 1000;
  return {
    connectionString: url,
    types,
    application_name: applicationName,
    connectionTimeoutMillis: 10_000,
    idle_in_transaction_session_timeout: holdMs,
    lock_timeout: holdMs + LOCK_WAIT_BEYOND_HOLD_MS,
    statement_timeout: holdMs + STATEMENT_BEYOND_HOLD_MS,
    keepAlive: true,
    keepAliveInitialDelayMillis: KEEPALIVE_IDLE_MS,
  };
}

/**
 * PostgreSQL gave up waiting, not on what was asked: a lock held past
 * lock_timeout, a statement past statement_timeout (or cancelled), a session
 * ended for sitting in a transaction. Nothing of it was written; the same
 * request may go through later.
 */
export function gaveUp(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '55P03' || code === '57014' || code === '25P03';
}

/**
 * PostgreSQL refused a write for the state it is in, not for what was asked: gaveUp, a read-only
 * transaction (a standby, default_transaction_read_only) or its resources short (class 53: a full disk,
 * no memory, no connection left).
 */
export function cannotWriteNow(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return gaveUp(err) || code === '25006' || (typeof code === 'string' && code.startsWith('53'));
}

/** `err`, as StoreUnavailable when PostgreSQL gave up waiting (gaveUp). */
export function gaveUpAsUnavailable(err: unknown): unknown {
  if (!gaveUp(err)) return err;
  return new StoreUnavailable(`the store gave up waiting (${(err as Error).message}); try again`, { cause: err });
}

/**
 * A login's read or session count the database did not answer (it is away,
 * restarting, out of connections): the client is told to come back, in each protocol's words for
 * a server's transient failure (FTP 451), where it was told "Local error in
 * processing" as for a fault of ours. Nothing was checked: not counted as a
 * failed login.
 */
export function storeAway(err: unknown): SluiceError {
  return new SluiceError('failure', 'Service not available; try again later', `user store: ${(err as Error).message}`);
}

/**
 * The URL as it may be shown in a message or a log: without its password,
 * in its user part or in its query (?password=, which libpq and pg take too;
 * sslpassword, libpq's key passphrase).
 */
export function describeUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    for (const key of new Set(u.searchParams.keys())) {
      if (/password/i.test(key)) u.searchParams.set(key, '***');
    }
    return u.toString();
  } catch {
    // Unparseable: pg will refuse it too; say so without echoing what may hold a password.
    return 'an unparseable PostgreSQL URL';
  }
}

/** A unique constraint refused the row: the one error the Store turns into StoreConflict. */
export function uniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as { code?: unknown; constraint?: unknown };
  return e.code === '23505' && (constraint === undefined || e.constraint === constraint);
}

/**
 * `fn` on one pooled connection of its own, then `end` (a ROLLBACK), then the
 * connection handed back, or dropped from the pool when PostgreSQL or `end`
 * broke it. While a connection is checked out, pg-pool listens for nothing on
 * it, and pg emits 'error' on a client whose server ends it (a restart, a
 * failover, pg_terminate_backend, a timeout of the server's): with no
 * listener that error ended the whole process, every session of the node
 * with it (found by a review: a backend ended while an admin API PATCH of a
 * user waited for the row's lock). The query under way rejects as well, so
 * the caller hears of it there.
 */
export async function onConnection<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
  end?: (client: pg.PoolClient) => Promise<unknown>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  const lost = (err: Error): void => void (broken ??= err);
  client.on('error', lost);
  try {
    return await fn(client);
  } catch (err) {
    // The statement after the end of the session hears only that the connection is gone; why (PostgreSQL ended a
    // transaction left idle, a node frozen in it) came as the 'error' event, and is what the caller is told.
    throw broken !== undefined && gaveUp(broken) ? broken : err;
  } finally {
    if (end) await end(client).catch((err: unknown) => lost(err instanceof Error ? err : new Error(String(err))));
    client.removeListener('error', lost);
    client.release(broken);
  }
}

/** A foreign key refused the row: what it names is gone (a user removed meanwhile). */
export function foreignKeyViolation(err: unknown): boolean {
  return (err as { code?: unknown }).code === '23503';
}

/** Run `fn` in one transaction on one pooled connection: all of it or none of it. */
export async function transaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  let committed = false;
  return onConnection(
    pool,
    async (client) => {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      committed = true;
      return result;
    },
    // A connection that cannot even roll back is not handed to the next caller.
    async (client) => {
      if (!committed) await client.query('ROLLBACK');
    },
  );
}
