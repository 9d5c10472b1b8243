import type pg from 'pg';
import type { BanRecord } from '../records.js';
import { banOf, type BanRow } from '../rows.js';
import type { BanRepository } from '../store.js';
import { storeSessionEnd } from './session-ends.js';
import { noticeObject, type Notices, type Subscriber } from './notices.js';

/** What migrations/postgres/002_bans.sql's trigger sends on channel sluice_bans. */
type Notice = { reload: true } | AddressNotice;
type AddressNotice = { address: string; removed: true } | { address: string; until: number | null };
/** A write of this node's, sent and not answered yet. */
interface Sent {
  /** The listening it was sent in (listenings), or null when sent while not listening. */
  listening: number | null;
  /** The notices of its address heard since it was sent, its own among them when it came before the answer. */
  meanwhile: AddressNotice[];
}

const BANS_CHANNEL = 'sluice_bans';
/**
 * The longest a write's own notice is awaited, every other notice of its
 * address skipped meanwhile. It comes within milliseconds, and a notices
 * connection silent for 5 s is replaced (KeptConnection), which forgets the
 * waits; this bound is for a case no one foresaw (two were found by a review),
 * so that a notice that never comes cannot have the address's later ones
 * skipped for ever.
 */
const ECHO_WAIT_MS = 10_000;

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
  /** This node's writes sent and not answered yet, per address. */
  private readonly sending = new Map<string, Set<Sent>>();
  /** This node's writes whose notices have not come back yet, per address, each with when its wait ends. */
  private readonly unechoed = new Map<string, { notice: AddressNotice; by: number }[]>();

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
    await this.write(address, () => this.pool.query(`INSERT INTO bans (address, until, count, reason, created_at)
      VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = excluded.count,
      reason = excluded.reason, created_at = excluded.created_at`, [address, until?.getTime() ?? null, count, reason,
      Date.now()]), () => ({ address, until: until?.getTime() ?? null }));
  }

  async putUnlessBanned(address: string, until: Date, count: number, reason: string, since: Date): Promise<boolean> {
    const r = await this.write(address, () => this.pool.query(`INSERT INTO bans (address, until, count, reason,
      created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (address) DO UPDATE SET until = excluded.until,
      count = excluded.count, reason = excluded.reason, created_at = excluded.created_at
      WHERE bans.until IS NOT NULL AND bans.until <= $6`, [address, until.getTime(), count, reason, since.getTime(),
      Date.now()]), (a) => (changed(a) ? { address, until: until.getTime() } : null));
    if (changed(r)) return true;
    // The ban that stood is another's (a node's, `sluice ban add`), whose notice may not have come (the notices
    // connection lost or behind): noted here as read now, as a write of this node's is, since the defender drops
    // its own for it (found by a review: the address this node had just decided to ban was let in). A read, no
    // write: no notice of it comes back.
    const { rows } = await this.pool.query<{ until: number | null }>('SELECT until FROM bans WHERE address = $1', [address]);
    this.note(rows[0] ? { address, until: rows[0].until } : { address, removed: true });
    return false;
  }

  async removeOwn(address: string, since: Date): Promise<boolean> {
    const r = await this.write(address, () => this.pool.query('DELETE FROM bans WHERE address = $1 AND created_at = $2',
      [address, since.getTime()]), (a) => (changed(a) ? { address, removed: true } : null));
    return changed(r);
  }

  async add(address: string, until: Date | null): Promise<void> {
    // One statement, so two administrators (or nodes) adding at once both count; its notice to end the address's
    // sessions on every node, and the row a node not listening then reads later (session-ends.ts), go with the
    // ban's commit, or not at all.
    await this.write(address, () => this.pool.query(`WITH banned AS (
      INSERT INTO bans (address, until, count, reason, created_at) VALUES ($1, $2, 1, $3, $4)
      ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = bans.count + 1, reason = excluded.reason,
      created_at = excluded.created_at
      RETURNING address),
      ${storeSessionEnd('SELECT address, NULL, NULL FROM banned')}`,
    [address, until?.getTime() ?? null, 'added by an administrator', Date.now()]),
    () => ({ address, until: until?.getTime() ?? null }));
  }

  async remove(address: string): Promise<boolean> {
    const r = await this.write(address, () => this.pool.query('DELETE FROM bans WHERE address = $1', [address]),
      (a) => (changed(a) ? { address, removed: true } : null));
    // No row, no notice: nothing of it comes back.
    if (!changed(r)) this.note({ address, removed: true });
    return changed(r);
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

  /**
   * Sends a write of `address`'s row and notes what it changed (`wrote`
   * of its answer: the state its notice carries, or null when it changed no
   * row, which sends none) as this node's own.
   */
  private async write<T>(address: string, send: () => Promise<T>, wrote: (answer: T) => AddressNotice | null): Promise<T> {
    const sent: Sent = { listening: this.client === null ? null : this.listenings, meanwhile: [] };
    let pending = this.sending.get(address);
    if (!pending) this.sending.set(address, (pending = new Set()));
    pending.add(sent);
    let answer: T;
    try {
      answer = await send();
    } finally {
      pending.delete(sent);
      if (pending.size === 0) this.sending.delete(address);
    }
    const notice = wrote(answer);
    if (notice) this.noteOwn(notice, sent);
    return answer;
  }

  /**
   * A write of this node's that changed a row, noted; its notice is awaited
   * when the write was sent after LISTEN took hold and the connection has
   * not been lost since: then it surely comes (a write committed before
   * LISTEN sends none here, and one that never comes would have every later
   * notice of the address skipped). Unless it came already: PostgreSQL
   * signals the listeners at commit, before the write's answer goes out, so
   * the notice may be heard first (found by a review: awaited then, it never
   * came again, and every later notice of the address was skipped for ever).
   */
  private noteOwn(notice: AddressNotice, sent: Sent): void {
    if (sent.meanwhile.some((heard) => sameNotice(heard, notice))) {
      // Its notice, or one of the same state, was heard since it was sent: the copy has it and what came after,
      // newer than this answer. During a refill those are held for after the read: it is in force at once meanwhile.
      if (this.held) this.apply(notice);
      return;
    }
    this.note(notice);
    if (sent.listening === null || sent.listening !== this.listenings) return;
    const awaited = { notice, by: performance.now() + ECHO_WAIT_MS };
    const waiting = this.unechoed.get(notice.address);
    if (waiting) waiting.push(awaited);
    else this.unechoed.set(notice.address, [awaited]);
  }

  notice(payload: string): void {
    const notice = parseNotice(payload);
    if (notice === null) return;
    if (!('reload' in notice)) {
      for (const sent of this.sending.get(notice.address) ?? []) sent.meanwhile.push(notice);
      if (this.older(notice)) return;
    }
    if (this.held) this.held.push(notice);
    else this.apply(notice);
  }

  /**
   * Whether `notice` is to be skipped: while a write of this node's is
   * awaited, each notice of its address is of a commit before that write's
   * (already applied, and newer). An awaited write's own notice ends its
   * wait, whichever it is: two writes on two of the pool's connections may
   * be answered in another order than they committed (found by a review:
   * only the first answered could end its wait, and the other was awaited
   * for ever). The notice that ends the last wait is of the last commit of
   * them all: applied as any other, the copy ends at what committed last,
   * not at what was answered last.
   */
  private older(notice: AddressNotice): boolean {
    const all = this.unechoed.get(notice.address);
    if (!all) return false;
    // A wait past its end is given up (see ECHO_WAIT_MS).
    const now = performance.now();
    const waiting = all.filter((awaited) => awaited.by > now);
    const own = waiting.findIndex((awaited) => sameNotice(awaited.notice, notice));
    if (own >= 0) waiting.splice(own, 1);
    this.unechoed.set(notice.address, waiting);
    if (waiting.length > 0) return true;
    this.unechoed.delete(notice.address);
    return false;
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

/** Whether a write's answer says it changed a row (and so sends a notice). */
function changed(answer: pg.QueryResult): boolean {
  return (answer.rowCount ?? 0) > 0;
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
