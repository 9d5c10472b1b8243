import pg from 'pg';
import type { BanRecord } from '../records.js';
import { banOf, type BanRow } from '../rows.js';
import type { BanRepository } from '../store.js';
import { clientConfig } from './connection.js';

/** What migrations/postgres/002_bans.sql's trigger sends on channel sluice_bans. */
type Notice = { reload: true } | { address: string; removed: true } | { address: string; until: number | null };

const CHANNEL = 'sluice_bans';
/** migrations/postgres/007_user_revoked.sql: a user disabled, expired, removed or without a key it had. */
const USERS_CHANNEL = 'sluice_users';

/** Told of a user whose access was narrowed on any node: `why` as the trigger says it ('user disabled'...). */
export type RevokedListener = (user: string, why: string) => void;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;
/**
 * How often the notification connection is asked a trivial query, and how
 * long it has to answer: a network cut or a frozen server sends no error, and
 * a node would go on answering from a copy nothing updates any more.
 */
const HEARTBEAT_MS = 5_000;

/**
 * Banned addresses in PostgreSQL, shared by every node. banned() is asked at
 * every accept and must not wait for the network, so each node keeps the bans
 * in force in memory: filled at open, kept current by the notifications the
 * bans table's trigger sends for every write, from any node or `sluice ban`.
 * A lost notification connection (an error, or no answer to the heartbeat)
 * is re-established and the copy refilled; until then it answers from what it knew. Expiry needs no notification: the
 * copy keeps each ban's end and compares it with this node's clock.
 */
export class PostgresBans implements BanRepository {
  /** Address -> end of its ban (unix ms), null: until removed. */
  private readonly inForce = new Map<string, number | null>();
  private listener: pg.Client | null = null;
  /** Notices that arrive while a refill's query runs, applied on top of its result in arrival (commit) order. */
  private held: Notice[] | null = null;
  private retryMs = RETRY_MIN_MS;
  private retry: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly revoked = new Set<RevokedListener>();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly url: string,
  ) {}

  /** Rejects when the notification connection cannot be made: a node that cannot see bans must not start. */
  static async open(pool: pg.Pool, url: string): Promise<PostgresBans> {
    const bans = new PostgresBans(pool, url);
    await bans.listen();
    bans.heartbeat = setInterval(() => bans.probe(), HEARTBEAT_MS);
    bans.heartbeat.unref();
    return bans;
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
    await this.pool.query(`INSERT INTO bans (address, until, count, reason, created_at) VALUES ($1, $2, $3, $4, $5)
      ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = excluded.count, reason = excluded.reason,
      created_at = excluded.created_at`, [address, until?.getTime() ?? null, count, reason, Date.now()]);
    this.note({ address, until: until?.getTime() ?? null });
  }

  async add(address: string, until: Date | null): Promise<void> {
    // One statement, so two administrators (or nodes) adding at once both count.
    await this.pool.query(`INSERT INTO bans (address, until, count, reason, created_at) VALUES ($1, $2, 1, $3, $4)
      ON CONFLICT (address) DO UPDATE SET until = excluded.until, count = bans.count + 1, reason = excluded.reason,
      created_at = excluded.created_at`, [address, until?.getTime() ?? null, 'added by an administrator', Date.now()]);
    this.note({ address, until: until?.getTime() ?? null });
  }

  async remove(address: string): Promise<boolean> {
    const r = await this.pool.query('DELETE FROM bans WHERE address = $1', [address]);
    this.note({ address, removed: true });
    return (r.rowCount ?? 0) > 0;
  }

  banned(address: string): boolean {
    const until = this.inForce.get(address);
    if (until === undefined) return false;
    if (until === null || until > Date.now()) return true;
    this.inForce.delete(address);
    return false;
  }

  /**
   * Users' access narrowed on any node comes on the same connection as the
   * bans (one per process, reconnected alike). While it is down notices are
   * missed: sessions then go on, and SSH still asks the store per channel.
   */
  onUserRevoked(listener: RevokedListener): () => void {
    this.revoked.add(listener);
    return () => void this.revoked.delete(listener);
  }

  /** Stop listening; the pool is the Store's to end. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.heartbeat) clearInterval(this.heartbeat);
    const listener = this.listener;
    this.listener = null;
    await listener?.end();
  }

  /**
   * This node's own write, applied at once so the next accept here sees it
   * (its notification follows and says the same).
   */
  private note(notice: Notice): void {
    if (this.held) this.held.push(notice);
    else this.apply(notice);
  }

  private async listen(): Promise<void> {
    const client = new pg.Client(clientConfig(this.url, 'sluice bans'));
    client.on('notification', (msg) => {
      if (msg.payload === undefined || this.listener !== client) return;
      if (msg.channel === USERS_CHANNEL) return this.tellRevoked(msg.payload);
      if (msg.channel !== CHANNEL) return;
      const notice = parseNotice(msg.payload);
      if (notice === null) return;
      if (this.held) this.held.push(notice);
      else this.apply(notice);
    });
    // 'error' and 'end' both come when the connection drops; the first one counts.
    client.on('error', () => this.drop(client));
    client.on('end', () => this.drop(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANNEL}; LISTEN ${USERS_CHANNEL}`);
      if (this.closed) {
        await client.end();
        return;
      }
      this.listener = client;
      // Refill after LISTEN: a write committed in between is in the result, its notice re-applied on top.
      await this.refill(client);
      this.retryMs = RETRY_MIN_MS;
    } catch (err) {
      this.listener = null;
      await client.end().catch(() => undefined);
      throw err;
    }
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
      const client = this.listener;
      if (client) this.refill(client).catch(() => this.drop(client));
    } else if ('removed' in notice || (notice.until !== null && notice.until <= Date.now())) {
      this.inForce.delete(notice.address);
    } else {
      this.inForce.set(notice.address, notice.until);
    }
  }

  private tellRevoked(payload: string): void {
    const notice = parseRevoked(payload);
    if (notice) for (const listener of this.revoked) listener(notice.user, notice.why);
  }

  private probe(): void {
    const client = this.listener;
    if (!client) return;
    const timer = setTimeout(() => this.drop(client), HEARTBEAT_MS);
    timer.unref();
    client.query('SELECT 1').then(() => clearTimeout(timer), () => {
      clearTimeout(timer);
      this.drop(client);
    });
  }

  /** Give up on `client` (its notices are ignored from now on) and connect anew. */
  private drop(client: pg.Client): void {
    if (this.listener !== client) return;
    this.listener = null;
    // On a dead link this may never finish: nothing waits for it.
    client.end().catch(() => undefined);
    this.reconnectLater();
  }

  private reconnectLater(): void {
    if (this.closed) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.closed) return;
      this.listen().catch(() => {
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
        this.reconnectLater();
      });
    }, this.retryMs);
    this.retry.unref();
  }
}

/**
 * Anyone with access to the database may NOTIFY on the channel: what is not
 * the trigger's shape is ignored rather than trusted (or thrown from an event handler).
 */
function parseNotice(payload: string): Notice | null {
  let v: unknown;
  try {
    v = JSON.parse(payload);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  if (o.reload === true) return { reload: true };
  if (typeof o.address !== 'string') return null;
  if (o.removed === true) return { address: o.address, removed: true };
  if (o.until === null || typeof o.until === 'number') return { address: o.address, until: o.until };
  return null;
}

function parseRevoked(payload: string): { user: string; why: string } | null {
  try {
    const v = JSON.parse(payload) as unknown;
    if (typeof v !== 'object' || v === null) return null;
    const { user, why } = v as Record<string, unknown>;
    return typeof user === 'string' && typeof why === 'string' ? { user, why } : null;
  } catch {
    return null;
  }
}
