import type pg from 'pg';
import { KeptConnection } from './kept-connection.js';

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

/**
 * The one connection per process that LISTENs for what other nodes (and the
 * CLI) change: bans, users' access narrowed, users changed. Nodes keep copies
 * of these so that no accept or login waits on the network, and a copy is only
 * as good as the notices behind it; so a lost connection is reported to every
 * subscriber at once, then made anew (KeptConnection).
 */
export class Notices {
  private readonly subscribers = new Map<string, Subscriber>();
  private readonly connection: KeptConnection;

  constructor(url: string) {
    this.connection = new KeptConnection(url, 'sluice notices', {
      up: (client) => this.listen(client),
      down: () => {
        for (const s of this.subscribers.values()) s.lost();
      },
    });
  }

  /** Before start() only: the channels are listened to together. */
  subscribe(channel: string, subscriber: Subscriber): void {
    if (!/^[a-z_]+$/.test(channel)) throw new Error(`bad channel name ${channel}`);
    this.subscribers.set(channel, subscriber);
  }

  /** Rejects when the connection cannot be made: a node that cannot hear of bans must not start. */
  start(): Promise<void> {
    return this.connection.start();
  }

  close(): Promise<void> {
    return this.connection.close();
  }

  /** Give up on `client` and connect anew: for a subscriber whose read on it failed. */
  drop(client: pg.Client): void {
    this.connection.drop(client);
  }

  private async listen(client: pg.Client): Promise<void> {
    client.on('notification', (msg) => {
      if (msg.payload === undefined || this.connection.current !== client) return;
      this.subscribers.get(msg.channel)?.notice(msg.payload);
    });
    await client.query([...this.subscribers.keys()].map((c) => `LISTEN ${c}`).join('; '));
    // After LISTEN: a write committed in between is in what they read, its notice applied on top.
    await Promise.all([...this.subscribers.values()].map((s) => s.listening(client)));
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
