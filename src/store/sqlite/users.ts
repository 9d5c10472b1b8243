import type { Database, Statement } from 'better-sqlite3';
import type { Protocol } from '../../session/account.js';
import type { Permission } from '../../session/permissions.js';
import { keyOf, type KeyRow } from '../rows.js';
import { settingsOf, type NewKey, type PublicKeyRecord, type UserRecord, type UserSettings } from '../records.js';
import type { Credentials, HomeCheck, HomeOfUser, UserRepository } from '../store.js';
import { DeferredUserWrites } from './deferred-writes.js';
import { sqliteWriteSoon } from './write-errors.js';

interface UserRow {
  id: number;
  name: string;
  password_hash: string | null;
  home: string;
  enabled: number;
  expires_at: number | null;
  protocols: string;
  require_tls: number;
  require_key: number;
  permissions: string;
  quota_bytes: number;
  quota_files: number;
  rate_up: number | null;
  rate_down: number | null;
  scan: number | null;
  used_bytes: number;
  used_files: number;
  created_at: number;
  updated_at: number;
  last_login_at: number | null;
}

const list = (s: string) => s.split(',').filter((x) => x !== '');
const usedOf = (u: { bytes: number; files: number }) => ({ usedBytes: u.bytes, usedFiles: u.files });
const lastLoginOf = (at: number | null) => (at === null ? null : new Date(at));

/**
 * Users in SQLite. Every call is a local, indexed statement that returns at
 * once; the methods are asynchronous only to share UserRepository with the
 * databases that are a round trip away.
 */
export class SqliteUsers implements UserRepository {
  private readonly q: Record<string, Statement>;
  /**
   * The usage counters, answered synchronously (the quota ledgers of a
   * single-node server read and settle them inside one step), and the last
   * logins: both written in batches.
   */
  readonly counters: DeferredUserWrites;

  constructor(private readonly db: Database) {
    this.counters = new DeferredUserWrites(db);
    const prepare = (sql: string) => db.prepare(sql);
    this.q = {
      byName: prepare('SELECT * FROM users WHERE name = ?'),
      byId: prepare('SELECT * FROM users WHERE id = ?'),
      all: prepare('SELECT * FROM users ORDER BY name'),
      homes: prepare('SELECT id, name, home FROM users'),
      count: prepare('SELECT COUNT(*) AS n FROM users'),
      // The id after the highest ever given (migration 009), not after the highest left.
      insert: prepare(`INSERT INTO users (id, name, password_hash, home, enabled, expires_at, protocols, require_tls,
        require_key, permissions, quota_bytes, quota_files, rate_up, rate_down, scan, created_at, updated_at)
        VALUES ((SELECT high + 1 FROM user_id_high), @name, @password_hash, @home, @enabled, @expires_at, @protocols, @require_tls,
        @require_key, @permissions, @quota_bytes, @quota_files, @rate_up, @rate_down, @scan, @now, @now)`),
      update: prepare(`UPDATE users SET home = @home, enabled = @enabled, expires_at = @expires_at,
        protocols = @protocols, require_tls = @require_tls, require_key = @require_key, permissions = @permissions,
        quota_bytes = @quota_bytes, quota_files = @quota_files, rate_up = @rate_up, rate_down = @rate_down, scan = @scan,
        updated_at = @now WHERE id = @id`),
      remove: prepare('DELETE FROM users WHERE id = ?'),
      setHash: prepare('UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?'),
      rehash: prepare('UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ? AND password_hash = ?'),
      ipRules: prepare('SELECT kind, cidr FROM user_ip_rules WHERE user_id = ? ORDER BY cidr'),
      clearIpRules: prepare('DELETE FROM user_ip_rules WHERE user_id = ?'),
      addIpRule: prepare('INSERT OR IGNORE INTO user_ip_rules (user_id, kind, cidr) VALUES (?, ?, ?)'),
      dirPerms: prepare('SELECT path, permissions FROM user_dir_permissions WHERE user_id = ? ORDER BY path'),
      setDirPerm: prepare(`INSERT INTO user_dir_permissions (user_id, path, permissions) VALUES (?, ?, ?)
        ON CONFLICT (user_id, path) DO UPDATE SET permissions = excluded.permissions`),
      removeDirPerm: prepare('DELETE FROM user_dir_permissions WHERE user_id = ? AND path = ?'),
      keys: prepare('SELECT * FROM user_keys WHERE user_id = ? ORDER BY id'),
      everyKey: prepare('SELECT * FROM user_keys ORDER BY user_id, id'),
      addKey: prepare(`INSERT INTO user_keys (user_id, algorithm, public_key, fingerprint, comment, created_at)
        VALUES (?, ?, ?, ?, ?, ?)`),
      removeKey: prepare('DELETE FROM user_keys WHERE user_id = ? AND fingerprint = ?'),
    };
  }

  async count(): Promise<number> {
    return (this.q.count!.get() as { n: number }).n;
  }

  async get(name: string): Promise<UserRecord | null> {
    const row = this.q.byName!.get(name) as UserRow | undefined;
    return row ? this.hydrate(row) : null;
  }

  /** Both reads in one turn, so no write of this process comes between them. */
  async credentials(name: string): Promise<Credentials | null> {
    const row = this.q.byName!.get(name) as UserRow | undefined;
    if (!row) return null;
    return { user: this.hydrate(row), keys: (this.q.keys!.all(row.id) as KeyRow[]).map(keyOf) };
  }

  async getById(id: number): Promise<UserRecord | null> {
    const row = this.q.byId!.get(id) as UserRow | undefined;
    return row ? this.hydrate(row) : null;
  }

  async all(): Promise<UserRecord[]> {
    return (this.q.all!.all() as UserRow[]).map((r) => this.hydrate(r));
  }

  /** Insert a user with its address rules and keys in one transaction. */
  async create(name: string, passwordHash: string | null, s: UserSettings, keys: NewKey[] = [], checkHome?: HomeCheck): Promise<UserRecord> {
    const id = await sqliteWriteSoon(() =>
      // IMMEDIATE: the write lock before checkHome reads the other homes.
      this.db.transaction(() => {
        checkHome?.(this.q.homes!.all() as HomeOfUser[]);
        const info = this.q.insert!.run({ name, password_hash: passwordHash, now: Date.now(), ...columns(s) });
        const userId = Number(info.lastInsertRowid);
        this.writeIpRules(userId, s);
        for (const k of keys) this.insertKey(userId, k);
        return userId;
      }).immediate(),
    );
    return this.hydrate(this.q.byId!.get(id) as UserRow);
  }

  async update(id: number, patch: Partial<UserSettings>, checkHome?: HomeCheck, passwordHash?: string): Promise<boolean> {
    // IMMEDIATE: the write lock before the read, or the CLI and the server could merge over each other.
    return sqliteWriteSoon(() => this.db.transaction(() => {
      const row = this.q.byId!.get(id) as UserRow | undefined;
      if (!row) return false;
      checkHome?.((this.q.homes!.all() as HomeOfUser[]).filter((u) => u.id !== id));
      const s = { ...settingsOf(this.hydrate(row)), ...patch };
      const now = Date.now();
      this.q.update!.run({ id, now, ...columns(s) });
      this.q.clearIpRules!.run(id);
      this.writeIpRules(id, s);
      if (passwordHash !== undefined) this.q.setHash!.run(passwordHash, now, id);
      return true;
    }).immediate());
  }

  async remove(id: number): Promise<void> {
    await sqliteWriteSoon(() => this.q.remove!.run(id));
    // SQLite gives a removed user's id to the next user made (INTEGER PRIMARY KEY takes max + 1):
    // its usage and last login still waiting to be written would become theirs.
    this.counters.forget(id);
  }

  async setPasswordHash(id: number, hash: string | null): Promise<void> {
    await sqliteWriteSoon(() => this.q.setHash!.run(hash, Date.now(), id));
  }

  async rehashPassword(id: number, from: string, to: string): Promise<boolean> {
    return (await sqliteWriteSoon(() => this.q.rehash!.run(to, Date.now(), id, from))).changes === 1;
  }

  async recordLogin(id: number): Promise<void> {
    this.counters.login(id, Date.now());
  }

  async usage(userId: number): Promise<{ bytes: number; files: number }> {
    return this.counters.usage(userId);
  }

  async addUsage(userId: number, bytes: number, files: number): Promise<void> {
    await sqliteWriteSoon(() => this.counters.addNow(userId, bytes, files));
  }

  async setUsage(userId: number, bytes: number, files: number): Promise<void> {
    await sqliteWriteSoon(() => this.counters.setUsage(userId, bytes, files));
  }

  async setDirPermissions(userId: number, path: string, permissions: Permission[] | null): Promise<boolean> {
    if (permissions === null) return (await sqliteWriteSoon(() => this.q.removeDirPerm!.run(userId, path))).changes > 0;
    await sqliteWriteSoon(() => this.q.setDirPerm!.run(userId, path, permissions.join(',')));
    return true;
  }

  async keys(userId: number): Promise<PublicKeyRecord[]> {
    return (this.q.keys!.all(userId) as KeyRow[]).map(keyOf);
  }

  async everyKey(): Promise<{ userId: number; key: PublicKeyRecord }[]> {
    return (this.q.everyKey!.all() as (KeyRow & { user_id: number })[]).map((r) => ({ userId: r.user_id, key: keyOf(r) }));
  }

  async addKey(userId: number, key: NewKey): Promise<void> {
    await sqliteWriteSoon(() => this.insertKey(userId, key));
  }

  async removeKey(userId: number, fingerprint: string): Promise<boolean> {
    return (await sqliteWriteSoon(() => this.q.removeKey!.run(userId, fingerprint))).changes > 0;
  }

  private insertKey(userId: number, k: NewKey): void {
    this.q.addKey!.run(userId, k.algorithm, k.blob, k.fingerprint, k.comment, Date.now());
  }

  private writeIpRules(userId: number, s: UserSettings): void {
    for (const cidr of s.allowIps) this.q.addIpRule!.run(userId, 'allow', cidr);
    for (const cidr of s.denyIps) this.q.addIpRule!.run(userId, 'deny', cidr);
  }

  private hydrate(r: UserRow): UserRecord {
    const rules = this.q.ipRules!.all(r.id) as { kind: string; cidr: string }[];
    const dirs = this.q.dirPerms!.all(r.id) as { path: string; permissions: string }[];
    return {
      id: r.id,
      name: r.name,
      passwordHash: r.password_hash,
      home: r.home,
      enabled: r.enabled === 1,
      expiresAt: r.expires_at === null ? null : new Date(r.expires_at),
      protocols: list(r.protocols) as Protocol[],
      requireTls: r.require_tls === 1,
      requireKey: r.require_key === 1,
      permissions: list(r.permissions) as Permission[],
      quotaBytes: r.quota_bytes,
      quotaFiles: r.quota_files,
      rateUp: r.rate_up,
      rateDown: r.rate_down,
      scan: r.scan === null ? null : r.scan === 1,
      ...usedOf(this.counters.withPending(r.id, { bytes: r.used_bytes, files: r.used_files })),
      createdAt: new Date(r.created_at),
      updatedAt: new Date(r.updated_at),
      lastLoginAt: lastLoginOf(this.counters.lastLogin(r.id, r.last_login_at)),
      allowIps: rules.filter((x) => x.kind === 'allow').map((x) => x.cidr),
      denyIps: rules.filter((x) => x.kind === 'deny').map((x) => x.cidr),
      dirPermissions: dirs.map((d) => ({ path: d.path, permissions: list(d.permissions) as Permission[] })),
    };
  }
}

/**
 * unix ms, or null for "never". An Invalid Date is refused: its NaN would be
 * bound as NULL, and an expired account would never expire.
 */
function expiryOf(at: Date | null): number | null {
  if (at === null) return null;
  const ms = at.getTime();
  if (!Number.isFinite(ms)) throw new RangeError('expiresAt is not a valid date');
  return ms;
}

function columns(s: UserSettings) {
  return {
    home: s.home,
    enabled: s.enabled ? 1 : 0,
    expires_at: expiryOf(s.expiresAt),
    protocols: s.protocols.join(','),
    require_tls: s.requireTls ? 1 : 0,
    require_key: s.requireKey ? 1 : 0,
    permissions: s.permissions.join(','),
    quota_bytes: s.quotaBytes,
    quota_files: s.quotaFiles,
    rate_up: s.rateUp,
    rate_down: s.rateDown,
    scan: s.scan === null ? null : s.scan ? 1 : 0,
  };
}
