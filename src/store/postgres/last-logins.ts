import type pg from 'pg';

/** How long a login's time waits for others to go with it. */
const BATCH_MS = 1_000;

/**
 * The users' rows are locked first, by id (the order of quota.ts), and each written once locked (joined
 * with `locked`). Before, they were written in the order the plan met them, which with a users table of
 * any size is the batch's, the order of the logins: two nodes' batches of the same users in other orders
 * deadlocked (and so did a batch and a node's drop of its quota holds), every login time of the failed
 * one lost (found by a review).
 */
const WRITE = `
  WITH v AS (SELECT * FROM unnest($1::integer[], $2::bigint[]) AS v (id, at)),
  locked AS (SELECT id FROM users WHERE id IN (SELECT id FROM v) ORDER BY id FOR NO KEY UPDATE)
  UPDATE users u SET last_login_at = GREATEST(coalesce(u.last_login_at, 0), v.at)
  FROM v, locked WHERE u.id = v.id AND u.id = locked.id`;

interface Batch {
  readonly at: Map<number, number>;
  readonly timer: NodeJS.Timeout;
  readonly written: Promise<void>;
  settle(err?: unknown): void;
}

/**
 * Users' last-login times, written together at most once a second: on a
 * database across the network each write is a round trip and a commit that
 * the next logins queue behind, and a login storm must not become a write
 * storm. A time is never moved back (another node may write an older one
 * later). close() writes what waits.
 */
export class LastLogins {
  private batch: Batch | null = null;

  constructor(private readonly pool: pg.Pool) {}

  /** Settles once the batch with this login is written. */
  record(id: number): Promise<void> {
    const batch = (this.batch ??= this.open());
    batch.at.set(id, Date.now());
    return batch.written;
  }

  async close(): Promise<void> {
    const batch = this.batch;
    if (!batch) return;
    clearTimeout(batch.timer);
    await this.write(batch).catch(() => undefined);
  }

  private open(): Batch {
    let settle: (err?: unknown) => void = () => undefined;
    const written = new Promise<void>((resolve, reject) => (settle = (err) => (err === undefined ? resolve() : reject(err))));
    // Those who do not wait for it must not see an unhandled rejection.
    written.catch(() => undefined);
    const timer = setTimeout(() => void this.write(batch).catch(() => undefined), BATCH_MS);
    timer.unref();
    const batch: Batch = { at: new Map(), timer, written, settle };
    return batch;
  }

  private async write(batch: Batch): Promise<void> {
    if (this.batch === batch) this.batch = null;
    try {
      await this.pool.query(WRITE, [[...batch.at.keys()], [...batch.at.values()]]);
      batch.settle();
    } catch (err) {
      batch.settle(err);
      throw err;
    }
  }
}
