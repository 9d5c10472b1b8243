import type pg from 'pg';
import type { Protocol } from '../../session/account.js';
import type { Permission } from '../../session/permissions.js';
import { keyOf, type KeyRow } from '../rows.js';
import { settingsOf, type NewKey, type PublicKeyRecord, type UserRecord, type UserSettings } from '../records.js';
import { StoreConflict, StoreUserGone, type Credentials, type HomeCheck, type HomeOfUser, type UserRepository } from '../store.js';
import { gaveUpAsUnavailable, foreignKeyViolation, storeAway, transaction, uniqueViolation } from './connection.js';
import type { LastLogins } from './last-logins.js';
import type { UserCache } from './user-cache.js';
import type { WriteTurns } from './write-turns.js';

interface UserRow {
  id: number;
  name: string;
  password_hash: string | null;
  home: string;
  enabled: boolean;
  expires_at: number | null;
  protocols: string;
  require_tls: boolean;
  require_key: boolean;
  permissions: string;
  quota_bytes: number;
  quota_files: number;
  rate_up: number | null;
  rate_down: number | null;
  scan: boolean | null;
  used_bytes: number;
  used_files: number;
  created_at: number;
  updated_at: number;
  last_login_at: number | null;
  ip_rules: { kind: string; cidr: string }[];
  dirs: { path: string; permissions: string }[];
}

/**
 * A user with its address rules and directory permissions in one statement:
 * one round trip at login, and one snapshot, so a concurrent update is seen
 * whole or not at all.
 */
const USER_COLUMNS = `u.*,
  (SELECT coalesce(json_agg(json_build_object('kind', r.kind, 'cidr', r.cidr) ORDER BY r.cidr), '[]')
     FROM user_ip_rules r WHERE r.user_id = u.id) AS ip_rules,
  (SELECT coalesce(json_agg(json_build_object('path', d.path, 'permissions', d.permissions) ORDER BY d.path), '[]')
     FROM user_dir_permissions d WHERE d.user_id = u.id) AS dirs`;
const SELECT_USER = `SELECT ${USER_COLUMNS} FROM users u`;

/** The user with its keys as well: what a login reads, in one round trip and one snapshot. */
const SELECT_CREDENTIALS = `SELECT ${USER_COLUMNS},
  (SELECT coalesce(json_agg(json_build_object('id', k.id, 'algorithm', k.algorithm, 'public_key', encode(k.public_key, 'base64'),
     'fingerprint', k.fingerprint, 'comment', k.comment, 'created_at', k.created_at) ORDER BY k.id), '[]')
     FROM user_keys k WHERE k.user_id = u.id) AS keys
  FROM users u WHERE lower(u.name) = lower($1)`;

/** What an admin sets, in the order settings() gives the values. */
const COLUMNS = ['home', 'enabled', 'expires_at', 'protocols', 'require_tls', 'require_key', 'permissions', 'quota_bytes',
  'quota_files', 'rate_up', 'rate_down', 'scan'];
const INSERT_USER = `INSERT INTO users (name, password_hash, ${COLUMNS.join(', ')}, created_at, updated_at)
  VALUES ($1, $2, ${COLUMNS.map((_, i) => `$${i + 3}`).join(', ')}, $${COLUMNS.length + 3}, $${COLUMNS.length + 3}) RETURNING id`;
const UPDATE_USER = `UPDATE users SET ${COLUMNS.map((c, i) => `${c} = $${i + 2}`).join(', ')},
  updated_at = $${COLUMNS.length + 2} WHERE id = $1`;

const list = (s: string) => s.split(',').filter((x) => x !== '');

/** The users and what hangs off them, as the SQLite UserStore keeps them, over a pool. */
export class PostgresUsers implements UserRepository {
  constructor(
    private readonly pool: pg.Pool,
    /** Logins' copy; every write here drops it at once, other nodes' writes by their notice. */
    private readonly cache: UserCache,
    private readonly lastLogins: LastLogins,
    /** Every write below takes one; reads and logins never wait for them. */
    private readonly writes: WriteTurns,
  ) {}

  async count(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>('SELECT count(*) AS n FROM users');
    return rows[0]?.n ?? 0;
  }

  get(name: string): Promise<UserRecord | null> {
    return this.one(this.pool, `${SELECT_USER} WHERE lower(u.name) = lower($1)`, [name]);
  }

  credentials(name: string): Promise<Credentials | null> {
    return this.cache.get(name, async () => {
      const { rows } = await this.pool.query<UserRow & { keys: (Omit<KeyRow, 'public_key'> & { public_key: string })[] }>(
        SELECT_CREDENTIALS, [name]).catch((err: unknown) => {
        throw storeAway(err);
      });
      const row = rows[0];
      if (!row) return null;
      return { user: hydrate(row), keys: row.keys.map((k) => keyOf({ ...k, public_key: Buffer.from(k.public_key, 'base64') })) };
    });
  }

  getById(id: number): Promise<UserRecord | null> {
    return this.one(this.pool, `${SELECT_USER} WHERE u.id = $1`, [id]);
  }

  async all(): Promise<UserRecord[]> {
    const { rows } = await this.pool.query<UserRow>(`${SELECT_USER} ORDER BY lower(u.name)`);
    return rows.map(hydrate);
  }

  async create(name: string, passwordHash: string | null, s: UserSettings, keys: NewKey[] = [], checkHome?: HomeCheck): Promise<UserRecord> {
    try {
      return await this.writes.run(() => transaction(this.pool, async (c) => {
        if (checkHome) {
          await lockHomes(c);
          checkHome(await otherHomes(c, null));
        }
        const now = Date.now();
        const { rows } = await c.query<{ id: number }>(INSERT_USER, [name, passwordHash, ...settings(s), now]);
        const id = (rows[0] as { id: number }).id;
        await writeIpRules(c, id, s);
        for (const k of keys) await insertKey(c, id, k, now);
        return (await this.one(c, `${SELECT_USER} WHERE u.id = $1`, [id])) as UserRecord;
      }));
    } catch (err) {
      if (uniqueViolation(err, 'users_name_nocase')) throw new StoreConflict(`user ${name} exists already`);
      if (uniqueViolation(err)) throw new StoreConflict(`user ${name}: the same key given twice`);
      throw gaveUpAsUnavailable(err);
    }
  }

  async update(id: number, patch: Partial<UserSettings>, checkHome?: HomeCheck, passwordHash?: string): Promise<boolean> {
    return this.changing(() => transaction(this.pool, async (c) => {
      // The homes' lock before the row's, in the order create takes them (it takes only the first).
      if (checkHome) await lockHomes(c);
      // The lock first, then a read that sees what any update before ours committed.
      if ((await c.query('SELECT id FROM users WHERE id = $1 FOR UPDATE', [id])).rowCount === 0) return false;
      if (checkHome) checkHome(await otherHomes(c, id));
      const current = (await this.one(c, `${SELECT_USER} WHERE u.id = $1`, [id])) as UserRecord;
      const s = { ...settingsOf(current), ...patch };
      await c.query(UPDATE_USER, [id, ...settings(s), Date.now()]);
      await c.query('DELETE FROM user_ip_rules WHERE user_id = $1', [id]);
      await writeIpRules(c, id, s);
      if (passwordHash !== undefined) await c.query('UPDATE users SET password_hash = $1 WHERE id = $2', [passwordHash, id]);
      return true;
    }));
  }

  async remove(id: number): Promise<void> {
    await this.changing(() => this.pool.query('DELETE FROM users WHERE id = $1', [id]));
  }

  async setPasswordHash(id: number, hash: string | null): Promise<void> {
    await this.changing(() => this.pool.query('UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3', [hash, Date.now(), id]));
  }

  async rehashPassword(id: number, from: string, to: string): Promise<boolean> {
    const write = () => this.pool.query('UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3 AND password_hash = $4', [to, Date.now(), id, from]);
    return (await this.changing(write, false)).rowCount === 1;
  }

  recordLogin(id: number): Promise<void> {
    return this.lastLogins.record(id);
  }

  async usage(userId: number): Promise<{ bytes: number; files: number }> {
    const { rows } = await this.pool.query<{ bytes: number; files: number }>(
      'SELECT used_bytes AS bytes, used_files AS files FROM users WHERE id = $1', [userId]);
    return rows[0] ?? { bytes: 0, files: 0 };
  }

  async addUsage(userId: number, bytes: number, files: number): Promise<void> {
    // One UPDATE: PostgreSQL re-reads the row it waited for, so concurrent additions from any node all count.
    await this.pool.query(`UPDATE users SET used_bytes = GREATEST(0, used_bytes + $1), used_files = GREATEST(0, used_files + $2)
      WHERE id = $3`, [bytes, files, userId]);
  }

  async setUsage(userId: number, bytes: number, files: number): Promise<void> {
    await this.pool.query('UPDATE users SET used_bytes = $1, used_files = $2 WHERE id = $3', [bytes, files, userId]);
  }

  async setDirPermissions(userId: number, path: string, permissions: Permission[] | null): Promise<boolean> {
    if (permissions === null) {
      const r = await this.changing(() => this.pool.query('DELETE FROM user_dir_permissions WHERE user_id = $1 AND path = $2', [userId, path]));
      return (r.rowCount ?? 0) > 0;
    }
    try {
      await this.changing(() => this.pool.query(`INSERT INTO user_dir_permissions (user_id, path, permissions) VALUES ($1, $2, $3)
        ON CONFLICT (user_id, path) DO UPDATE SET permissions = excluded.permissions`, [userId, path, permissions.join(',')]));
    } catch (err) {
      if (foreignKeyViolation(err)) throw new StoreUserGone(`no user with id ${userId}`);
      throw err;
    }
    return true;
  }

  async keys(userId: number): Promise<PublicKeyRecord[]> {
    const { rows } = await this.pool.query<KeyRow>('SELECT * FROM user_keys WHERE user_id = $1 ORDER BY id', [userId]);
    return rows.map(keyOf);
  }

  async everyKey(): Promise<{ userId: number; key: PublicKeyRecord }[]> {
    const { rows } = await this.pool.query<KeyRow & { user_id: number }>('SELECT * FROM user_keys ORDER BY user_id, id');
    return rows.map((r) => ({ userId: r.user_id, key: keyOf(r) }));
  }

  async addKey(userId: number, key: NewKey): Promise<void> {
    try {
      await this.changing(() => insertKey(this.pool, userId, key, Date.now()));
    } catch (err) {
      if (uniqueViolation(err)) throw new StoreConflict(`the user has the key ${key.fingerprint} already`);
      if (foreignKeyViolation(err)) throw new StoreUserGone(`no user with id ${userId}`);
      throw err;
    }
  }

  async removeKey(userId: number, fingerprint: string): Promise<boolean> {
    const r = await this.changing(() => this.pool.query('DELETE FROM user_keys WHERE user_id = $1 AND fingerprint = $2', [userId, fingerprint]));
    return (r.rowCount ?? 0) > 0;
  }

  /**
   * A write to what logins read, in its turn (WriteTurns): this node's copy goes however it ends (its notice
   * reaches the other nodes).
   */
  private async changing<T>(write: () => Promise<T>, inTurn = true): Promise<T> {
    try {
      return await (inTurn ? this.writes.run(write) : write());
    } catch (err) {
      throw gaveUpAsUnavailable(err);
    } finally {
      this.cache.forget();
    }
  }

  private async one(db: pg.Pool | pg.PoolClient, sql: string, values: unknown[]): Promise<UserRecord | null> {
    const { rows } = await db.query<UserRow>(sql, values);
    return rows[0] ? hydrate(rows[0]) : null;
  }
}

/** unix ms, or null for "never"; an Invalid Date is refused, never taken for "never" (as in the SQLite store). */
function expiryOf(at: Date | null): number | null {
  if (at === null) return null;
  const ms = at.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('expiresAt is not a valid date');
  return ms;
}

/** The values of COLUMNS. */
function settings(s: UserSettings): unknown[] {
  return [s.home, s.enabled, expiryOf(s.expiresAt), s.protocols.join(','), s.requireTls, s.requireKey,
    s.permissions.join(','), s.quotaBytes, s.quotaFiles, s.rateUp, s.rateDown, s.scan];
}

async function writeIpRules(c: pg.PoolClient, userId: number, s: UserSettings): Promise<void> {
  const rules = [...s.allowIps.map((cidr) => ['allow', cidr]), ...s.denyIps.map((cidr) => ['deny', cidr])];
  if (rules.length === 0) return;
  // The same address listed twice is one rule, as SQLite's INSERT OR IGNORE makes it.
  await c.query(`INSERT INTO user_ip_rules (user_id, kind, cidr)
    SELECT $1, kind, cidr FROM unnest($2::text[], $3::text[]) AS t (kind, cidr) ON CONFLICT DO NOTHING`,
  [userId, rules.map((r) => r[0]), rules.map((r) => r[1])]);
}

function insertKey(db: pg.Pool | pg.PoolClient, userId: number, k: NewKey, now: number) {
  return db.query(`INSERT INTO user_keys (user_id, algorithm, public_key, fingerprint, comment, created_at)
    VALUES ($1, $2, $3, $4, $5, $6)`, [userId, k.algorithm, k.blob, k.fingerprint, k.comment, now]);
}

function hydrate(r: UserRow): UserRecord {
  return {
    id: r.id,
    name: r.name,
    passwordHash: r.password_hash,
    home: r.home,
    enabled: r.enabled,
    expiresAt: r.expires_at === null ? null : new Date(r.expires_at),
    protocols: list(r.protocols) as Protocol[],
    requireTls: r.require_tls,
    requireKey: r.require_key,
    permissions: list(r.permissions) as Permission[],
    quotaBytes: r.quota_bytes,
    quotaFiles: r.quota_files,
    rateUp: r.rate_up,
    rateDown: r.rate_down,
    scan: r.scan,
    usedBytes: r.used_bytes,
    usedFiles: r.used_files,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
    lastLoginAt: r.last_login_at === null ? null : new Date(r.last_login_at),
    allowIps: r.ip_rules.filter((x) => x.kind === 'allow').map((x) => x.cidr),
    denyIps: r.ip_rules.filter((x) => x.kind === 'deny').map((x) => x.cidr),
    dirPermissions: r.dirs.map((d) => ({ path: d.path, permissions: list(d.permissions) as Permission[] })),
  };
}

/** "slhm" in ASCII: the advisory lock of transactions that write a home (HomeCheck). */
const HOMES_LOCK = 0x736c686d;

/** HOMES_LOCK, for the rest of the transaction: one transaction that writes a home at a time, on every node. */
async function lockHomes(c: pg.PoolClient): Promise<void> {
  await c.query('SELECT pg_advisory_xact_lock($1)', [HOMES_LOCK]);
}

/**
 * The homes of the users other than `self`, read under HOMES_LOCK: in READ
 * COMMITTED each statement sees what committed before it, so a home written
 * by a transaction that held the lock before this one is seen.
 */
async function otherHomes(c: pg.PoolClient, self: number | null): Promise<HomeOfUser[]> {
  const { rows } = await c.query<HomeOfUser>('SELECT id, name, home FROM users WHERE id IS DISTINCT FROM $1', [self]);
  return rows;
}
