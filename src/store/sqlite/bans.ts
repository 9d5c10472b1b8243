import type { Database, Statement } from 'better-sqlite3';
import type { BanRepository } from '../store.js';
import type { BanRecord } from '../records.js';
import { banOf, type BanRow } from '../rows.js';
import { sqliteWriteSoon } from './write-errors.js';

/**
 * Banned addresses, shared by the server (checked at every accept: one
 * primary-key look-up) and the CLI (which writes here directly, so a running
 * server sees its bans at the next connection).
 */
export class SqliteBans implements BanRepository {
  private readonly q: Record<'get' | 'active' | 'activeCount' | 'put' | 'putUnlessBanned' | 'remove' | 'removeOwn', Statement>;

  constructor(db: Database) {
    this.q = {
      get: db.prepare('SELECT * FROM bans WHERE address = ?'),
      active: db.prepare('SELECT * FROM bans WHERE until IS NULL OR until > ? ORDER BY address'),
      activeCount: db.prepare('SELECT count(*) AS n FROM bans WHERE until IS NULL OR until > ?'),
      put: db.prepare(`INSERT INTO bans (address, until, count, reason, created_at) VALUES (@address, @until, @count, @reason, @now)
        ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = excluded.count, reason = excluded.reason,
        created_at = excluded.created_at`),
      putUnlessBanned: db.prepare(`INSERT INTO bans (address, until, count, reason, created_at) VALUES (@address, @until, @count, @reason, @since)
        ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = excluded.count, reason = excluded.reason,
        created_at = excluded.created_at WHERE bans.until IS NOT NULL AND bans.until <= @now`),
      remove: db.prepare('DELETE FROM bans WHERE address = ?'),
      removeOwn: db.prepare('DELETE FROM bans WHERE address = ? AND created_at = ?'),
    };
  }

  /** The address's row, current ban or past one. */
  async get(address: string): Promise<BanRecord | null> {
    const row = this.q.get.get(address) as BanRow | undefined;
    return row ? banOf(row) : null;
  }

  /** Is the address banned at `now`? A primary-key look-up in a local file: no copy to keep current. */
  banned(address: string, now = Date.now()): boolean {
    const row = this.q.get.get(address) as BanRow | undefined;
    return row !== undefined && (row.until === null || row.until > now);
  }

  /** Bans in force at `now`. */
  async active(now = Date.now()): Promise<BanRecord[]> {
    return (this.q.active.all(now) as BanRow[]).map(banOf);
  }

  /** How many bans are in force at `now`. */
  async activeCount(now = Date.now()): Promise<number> {
    return (this.q.activeCount.get(now) as { n: number }).n;
  }

  async put(address: string, until: Date | null, count: number, reason: string): Promise<void> {
    await sqliteWriteSoon(() => this.q.put.run({ address, until: until?.getTime() ?? null, count, reason, now: Date.now() }));
  }

  async putUnlessBanned(address: string, until: Date, count: number, reason: string, since: Date): Promise<boolean> {
    const put = () => this.q.putUnlessBanned.run({ address, until: until.getTime(), count, reason, since: since.getTime(), now: Date.now() });
    return (await sqliteWriteSoon(put)).changes > 0;
  }

  async removeOwn(address: string, since: Date): Promise<boolean> {
    return (await sqliteWriteSoon(() => this.q.removeOwn.run(address, since.getTime()))).changes > 0;
  }

  /** A ban by an administrator: counted as one more in the address's row, so the defender's next one is longer. */
  async add(address: string, until: Date | null): Promise<void> {
    await this.put(address, until, ((await this.get(address))?.count ?? 0) + 1, 'added by an administrator');
  }

  /** Lift the ban and forget the address's history; false when there was none. */
  async remove(address: string): Promise<boolean> {
    return (await sqliteWriteSoon(() => this.q.remove.run(address))).changes > 0;
  }
}
