import type pg from 'pg';
import type { BanRecord } from '../records.js';
import { banOf, type BanRow } from '../rows.js';
import type { BanRepository } from '../store.js';
import { storeSessionEnd } from './session-ends.js';
import { noticeObject, type Notices, type Subscriber } from './notices.js';

/** What migrations/postgres/002_bans.sql's trigger sends on channel sluice_bans. */
type Notice = { reload: true } | AddressNotice;
type AddressNotice = { address: string; removed: true } | { address: string; until: number | null };

const BANS_CHANNEL = 'sluice_bans';

/**
 * Banned addresses in PostgreSQL, shared by every node. banned() is asked at
 * every accept and must not wait for the network, so each node keeps the bans
 * in force in memory: filled whenever the notices connection listens, kept
 * current by the notices the bans table's trigger sends for every write, from
 * any node or `sluice ban`. While that connection is lost it answers from what
 * it knew. Expiry needs no notice: the copy keeps each ban's end and compares
 * it with this node's clock.
 *
 * A write of this node's is applied at once (note), before its notice comes
 * back; a notice of an earlier commit to the same address may still be on its
 * way, and applied after it took the address back to that earlier state until
 * the write's own notice came (a clean run's contract test saw a ban just
 * stored not banned). Notices come in commit order, so while a write's own
 * notice is awaited (unechoed), every other notice of its address is older
 * and is skipped.
 */
export class PostgresBans implements BanRepository, Subscriber {
  /** Address -> end of its ban (unix ms), null: until removed. */
  private readonly inForce = new Map<string, number | null>();
  /** Notices that arrive while a refill's query runs, applied on top of its result in arrival (commit) order. */
  private held: Notice[] | null = null;
  private client: pg.Client | null = null;
  /** Counts each start and end of listening: a write sent and answered within one hears its own notice. */
  private listenings = 0;
  /** This node's writes whose notices have not come back yet, per address, oldest first. */
  private readonly unechoed = new Map<string, AddressNotice[]>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly notices: Notices,
  ) {
    notices.subscribe(BANS_CHANNEL, this);
  }

  async get(address: string): Promise<BanRecord | null> {
    const { rows } = await this.pool.query<BanRow>('SELECT * FROM bans WHERE address = $1', [address]);
    return rows[0] ? banOf(rows[0]) : null;
  }

  async active(now = Date.now()): Promise<BanRecord[]> {
    const { rows } = await this.pool.query<BanRow>(
      'SELECT * FROM bans WHERE until IS NULL OR until > $1 ORDER BY address', [now]);
    return rows.map(banOf);
  }

  async activeCount(now = Date.now()): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(
      'SELECT count(*) AS n FROM bans WHERE until IS NULL OR until > $1', [now]);
    return rows[0]?.n ?? 0;
  }

  async put(address: string, until: Date | null, count: number, reason: string): Promise<void> {
    const heard = this.hearing();
    await this.pool.query(`INSERT INTO bans (address, until, count, reason, created_at) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = excluded.count, reason = excluded.reason,
      created_at = excluded.created_at`, [address, until?.getTime() ?? null, count, reason, Date.now()]);
    this.noteOwn({ address, until: until?.getTime() ?? null }, heard);
  }

  async putUnlessBanned(address: string, until: Date, count: number, reason: string, since: Date): Promise<boolean> {
    const heard = this.hearing();
    const r = await this.pool.query(`INSERT INTO bans (address, until, count, reason, created_at) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = excluded.count, reason = excluded.reason,
      created_at = excluded.created_at WHERE bans.until IS NOT NULL AND bans.until <= $6`,
    [address, until.getTime(), count, reason, since.getTime(), Date.now()]);
    if ((r.rowCount ?? 0) > 0) {
      this.noteOwn({ address, until: until.getTime() }, heard);
      return true;
    }
    // The ban that stood is another's (a node's, `sluice ban add`), whose notice may not have come (the notices
    // connection lost or behind): noted here as read now, as a write of this node's is, since the defender drops
    // its own for it (found by a review: the address this node had just decided to ban was let in). A read, no
    // write: no notice of it comes back.
    const { rows } = await this.pool.query<{ until: number | null }>('SELECT until FROM bans WHERE address = $1', [address]);
    this.note(rows[0] ? { address, until: rows[0].until } : { address, removed: true });
    return false;
  }

  async removeOwn(address: string, since: Date): Promise<boolean> {
    const heard = this.hearing();
    const r = await this.pool.query('DELETE FROM bans WHERE address = $1 AND created_at = $2', [address, since.getTime()]);
    if ((r.rowCount ?? 0) === 0) return false;
    this.noteOwn({ address, removed: true }, heard);
    return true;
  }

  async add(address: string, until: Date | null): Promise<void> {
    // One statement, so two administrators (or nodes) adding at once both count; its notice to end the address's
    // sessions on every node, and the row a node not listening then reads later (session-ends.ts), go with the
    // ban's commit, or not at all.
    const heard = this.hearing();
    await this.pool.query(`WITH banned AS (
      INSERT INTO bans (address, until, count, reason, created_at) VALUES ($1, $2, 1, $3, $4)
      ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = bans.count + 1, reason = excluded.reason,
      created_at = excluded.created_at
      RETURNING address),
      ${storeSessionEnd('SELECT address, NULL, NULL FROM banned')}`,
    [address, until?.getTime() ?? null, 'added by an administrator', Date.now()]);
    this.noteOwn({ address, until: until?.getTime() ?? null }, heard);
  }

  async remove(address: string): Promise<boolean> {
    const heard = this.hearing();
    const r = await this.pool.query('DELETE FROM bans WHERE address = $1', [address]);
    // No row, no notice: nothing of it comes back.
    if ((r.rowCount ?? 0) === 0) {
      this.note({ address, removed: true });
      return false;
    }
    this.noteOwn({ address, removed: true }, heard);
    return true;
  }

  banned(address: string): boolean {
    const until = this.inForce.get(address);
    if (until === undefined) return false;
    if (until === null || until > Date.now()) return true;
    this.inForce.delete(address);
    return false;
  }

  /**
   * This node's own write, applied at once so the next accept here sees it
   * (its notification follows and says the same). During a refill as well,
   * and kept for after it, whose read may have been taken before the write
   * and is put in place of all: held only, it was not in force here until
   * the refill's read came back (a clean run's contract test met that, the
   * ban just stored not banned).
   */
  private note(notice: Notice): void {
    this.apply(notice);
    this.held?.push(notice);
  }

  /** Before a write: the listening its notice will come back on, or null while not listening. */
  private hearing(): number | null {
    return this.client === null ? null : this.listenings;
  }

  /**
   * A write of this node's that changed a row, noted; its notice is awaited
   * when the write was sent after LISTEN took hold and the connection has
   * not been lost since: then it surely comes (a write committed before
   * LISTEN sends none here, and one that never comes would have every later
   * notice of the address skipped).
   */
  private noteOwn(notice: AddressNotice, heard: number | null): void {
    this.note(notice);
    if (heard === null || heard !== this.listenings) return;
    const waiting = this.unechoed.get(notice.address);
    if (waiting) waiting.push(notice);
    else this.unechoed.set(notice.address, [notice]);
  }

  notice(payload: string): void {
    const notice = parseNotice(payload);
    if (notice === null) return;
    if (!('reload' in notice) && this.older(notice)) return;
    if (this.held) this.held.push(notice);
    else this.apply(notice);
  }

  /**
   * Whether `notice` is of a commit before a write of this node's still
   * awaited (so already applied, and newer): skipped. The first awaited
   * write's own notice ends its wait, and is skipped too: it says what was
   * applied when the write was noted.
   */
  private older(notice: AddressNotice): boolean {
    const waiting = this.unechoed.get(notice.address);
    if (!waiting) return false;
    if (sameNotice(waiting[0] as AddressNotice, notice)) {
      waiting.shift();
      if (waiting.length === 0) this.unechoed.delete(notice.address);
    }
    return true;
  }

  async listening(client: pg.Client): Promise<void> {
    this.client = client;
    this.listenings++;
    await this.refill(client);
  }

  lost(): void {
    this.client = null;
    this.listenings++;
    // Their notices went with the connection.
    this.unechoed.clear();
  }

  private async refill(client: pg.Client): Promise<void> {
    this.held = [];
    try {
      const { rows } = await client.query<{ address: string; until: number | null }>(
        'SELECT address, until FROM bans WHERE until IS NULL OR until > $1', [Date.now()]);
      this.inForce.clear();
      for (const r of rows) this.inForce.set(r.address, r.until);
    } finally {
      const held = this.held;
      this.held = null;
      for (const notice of held) this.apply(notice);
    }
  }

  private apply(notice: Notice): void {
    if ('reload' in notice) {
      // TRUNCATE: no rows to name, so read them all again; a failure there is a lost connection.
      const client = this.client;
      if (client) this.refill(client).catch(() => this.notices.drop(client));
    } else if ('removed' in notice || (notice.until !== null && notice.until <= Date.now())) {
      this.inForce.delete(notice.address);
    } else {
      this.inForce.set(notice.address, notice.until);
    }
  }
}

function sameNotice(a: AddressNotice, b: AddressNotice): boolean {
  return 'removed' in a ? 'removed' in b : !('removed' in b) && a.until === b.until;
}

/**
 * Anyone with access to the database may NOTIFY on the channel: what is not
 * the trigger's shape is ignored rather than trusted (or thrown from an event handler).
 */
function parseNotice(payload: string): Notice | null {
  const o = noticeObject(payload);
  if (o === null) return null;
  if (o.reload === true) return { reload: true };
  if (typeof o.address !== 'string') return null;
  if (o.removed === true) return { address: o.address, removed: true };
  if (o.until === null || typeof o.until === 'number') return { address: o.address, until: o.until };
  return null;
}
