import pg from 'pg';

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

/** Connection settings for `url`; the password stays inside pg's config, never in a message of ours. */
export function clientConfig(url: string, applicationName = 'sluice'): pg.ClientConfig {
  return { connectionString: url, types, application_name: applicationName, connectionTimeoutMillis: 10_000 };
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

/** Run `fn` in one transaction on one pooled connection: all of it or none of it. */
export async function transaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    // A connection that cannot even roll back is not handed to the next caller.
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken);
  }
}
