import pg from 'pg';
import { clientConfig } from './connection.js';

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;
/**
 * How often the connection is asked a trivial query, and how long it has to
 * answer: a network cut or a frozen server sends no error, and what rides on
 * the connection (notices, a lock) would be gone without a word.
 */
const HEARTBEAT_MS = 5_000;

/** What a kept connection is for. */
export interface ConnectionUse {
  /**
   * The connection is up (again): make it what it is for (LISTEN, take a
   * lock). Rejecting gives it up and tries again later.
   */
  up(client: pg.Client): Promise<void>;
  /** It is gone: what rode on it is gone too, until `up` again. */
  down(): void;
}

/**
 * One connection of its own to PostgreSQL that is kept: a lost one (an
 * error, the end, or no answer to the heartbeat) is reported at once and made
 * anew with a growing delay, one attempt at a time.
 */
export class KeptConnection {
  private client: pg.Client | null = null;
  private connecting = false;
  private retryMs = RETRY_MIN_MS;
  private retry: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly name: string,
    private readonly use: ConnectionUse,
  ) {}

  /** Rejects when the first connection cannot be made, or `up` refuses it: then nothing is retried. */
  async start(): Promise<void> {
    await this.connect();
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

  /** Give up on `client` and connect anew: also for a use that finds it broken. */
  drop(client: pg.Client): void {
    if (this.client !== client) return;
    this.client = null;
    this.use.down();
    // On a dead link this may never finish: nothing waits for it.
    client.end().catch(() => undefined);
    this.reconnectLater();
  }

  private async connect(): Promise<void> {
    this.connecting = true;
    // The default limits: it opens no transaction and waits for no lock.
    const client = new pg.Client(clientConfig(this.url, this.name));
    // Listened to before anything can fail: an 'error' without a listener would end the process.
    client.on('error', () => this.drop(client));
    client.on('end', () => this.drop(client));
    try {
      await client.connect();
      if (this.closed) throw new Error('closed');
      this.client = client;
      await this.use.up(client);
      if (this.client !== client) throw new Error('connection lost while it was being set up');
      this.retryMs = RETRY_MIN_MS;
    } catch (err) {
      if (this.client === client) {
        this.client = null;
        this.use.down();
      }
      await client.end().catch(() => undefined);
      throw err;
    } finally {
      this.connecting = false;
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

  private reconnectLater(): void {
    // One attempt at a time: a drop during an attempt is that attempt's failure, retried by it.
    if (this.closed || this.retry !== null || this.connecting) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      if (this.closed) return;
      this.connect().catch(() => {
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
        this.reconnectLater();
      });
    }, this.retryMs);
    this.retry.unref();
  }

  /** The client, while up: for a use that reads through it later (a refill on a notice). */
  get current(): pg.Client | null {
    return this.client;
  }
}
