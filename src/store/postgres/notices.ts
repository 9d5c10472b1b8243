import pg from 'pg';
import { clientConfig } from './connection.js';

/** What a channel's subscriber is told. */
export interface Subscriber {
  /** A notice on the channel. Anyone with access to the database may NOTIFY: the payload is untrusted. */
  notice(payload: string): void;
  /**
   * Listening (again), on `client`: notices from here on arrive, and those
   * missed while not listening are lost, so a copy is read afresh here.
   * Rejecting gives the connection up (and tries again later).
   */
  listening(client: pg.Client): Promise<void>;
  /** Not listening any more: until `listening` again, notices are missed. */
  lost(): void;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;
/**
 * How often the connection is asked a trivial query, and how long it has to
 * answer: a network cut or a frozen server sends no error, and a node would
 * go on trusting copies nothing updates any more.
 */
const HEARTBEAT_MS = 5_000;

/**
 * The one connection per process that LISTENs for what other nodes (and the
 * CLI) change: bans, users' access narrowed, users changed. Nodes keep copies
 * of these so that no accept or login waits on the network, and a copy is only
 * as good as the notices behind it; so a lost connection (an error, or no
 * answer to the heartbeat) is reported to every subscriber at once, then
 * re-established with a growing delay.
 */
export class Notices {
  private readonly subscribers = new Map<string, Subscriber>();
  private client: pg.Client | null = null;
  private retryMs = RETRY_MIN_MS;
  private retry: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly url: string) {}

  /** Before start() only: the channels are listened to together. */
  subscribe(channel: string, subscriber: Subscriber): void {
    if (!/^[a-z_]+$/.test(channel)) throw new Error(`bad channel name ${channel}`);
    this.subscribers.set(channel, subscriber);
  }

  /** Rejects when the connection cannot be made: a node that cannot hear of bans must not start. */
  async start(): Promise<void> {
    await this.listen();
    this.heartbeat = setInterval(() => this.probe(), HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    if (this.heartbeat) clearInterval(this.heartbeat);
    const client = this.client;
    this.client = null;
    await client?.end();
  }

  private async listen(): Promise<void> {
    const client = new pg.Client(clientConfig(this.url, 'sluice notices'));
    client.on('notification', (msg) => {
      if (msg.payload === undefined || this.client !== client) return;
      this.subscribers.get(msg.channel)?.notice(msg.payload);
    });
    // 'error' and 'end' both come when the connection drops; the first one counts.
    client.on('error', () => this.drop(client));
    client.on('end', () => this.drop(client));
    try {
      await client.connect();
      await client.query([...this.subscribers.keys()].map((c) => `LISTEN ${c}`).join('; '));
      if (this.closed) {
        await client.end();
        return;
      }
      this.client = client;
      // After LISTEN: a write committed in between is in what they read, its notice applied on top.
      await Promise.all([...this.subscribers.values()].map((s) => s.listening(client)));
      this.retryMs = RETRY_MIN_MS;
    } catch (err) {
      if (this.client === client) this.lose();
      await client.end().catch(() => undefined);
      throw err;
    }
  }

  private probe(): void {
    const client = this.client;
    if (!client) return;
    const timer = setTimeout(() => this.drop(client), HEARTBEAT_MS);
    timer.unref();
    client.query('SELECT 1').then(() => clearTimeout(timer), () => {
      clearTimeout(timer);
      this.drop(client);
    });
  }

  /** Give up on `client` (its notices are ignored from now on) and connect anew. Also for a subscriber whose refill failed. */
  drop(client: pg.Client): void {
    if (this.client !== client) return;
    this.lose();
    // On a dead link this may never finish: nothing waits for it.
    client.end().catch(() => undefined);
    this.reconnectLater();
  }

  private lose(): void {
    this.client = null;
    for (const s of this.subscribers.values()) s.lost();
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

/** A notice's JSON object, or null: what is not the trigger's shape is ignored rather than trusted. */
export function noticeObject(payload: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(payload) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
