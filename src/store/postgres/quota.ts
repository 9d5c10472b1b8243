import type pg from 'pg';
import type { Account } from '../../session/account.js';
import { SluiceError } from '../../session/errors.js';
import type { QuotaRoom, QuotaRooms, Usage } from '../../session/quota.js';
import { gaveUp } from './connection.js';

/**
 * A node asks for this much more than it needs, so that the next uploads'
 * bytes are handed out from its lease without a round trip: at most 8 MiB,
 * and at most 1/32 of the quota, so that what the other nodes cannot use
 * while this one holds it stays small beside the quota.
 */
const LEASE_BYTES = 8 * 1024 * 1024;
const LEASE_FILES = 16;
const LEASE_SHARE = 32;
/**
 * How long a settle waits for the user's next ones to go in the same
 * statement: one after another, small uploads end every few milliseconds,
 * and a statement each costs the database (and the cores it shares) a commit.
 * Nothing waits for a settle; the bytes stay held meanwhile, so the others'
 * room is right all along.
 */
const GATHER_MS = 50;
/** A settle or drop the database did not take is tried again after this long, doubling up to the most. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 1_000;

/*
 * The order of locks, in every statement here and in the store's other writes (a cycle is a deadlock,
 * which PostgreSQL ends a second later by failing one of them): a user's row of users first, then the
 * node's rows of the user (quota_settles, quota_holds); a statement of several users locks their rows
 * of users in the order of their ids. A user's removal (DELETE FROM users) locks the row, then its
 * cascade the rest, in this order too; last-logins.ts and write-locks.ts lock users' rows by id as well.
 */

/** Room for `need` (and `extra` more), all of it or none: used + held stays within the quota. */
const GRANT = `
  WITH granted AS (
    UPDATE users SET held_bytes = held_bytes + $3, held_files = held_files + $4
    WHERE id = $2
      AND (quota_bytes = 0 OR used_bytes + held_bytes + $3 <= quota_bytes)
      AND (quota_files = 0 OR used_files + held_files + $4 <= quota_files)
    RETURNING id)
  INSERT INTO quota_holds (node_id, user_id, bytes, files) SELECT $1, id, $3, $4 FROM granted
  ON CONFLICT (node_id, user_id) DO UPDATE
    SET bytes = quota_holds.bytes + EXCLUDED.bytes, files = quota_holds.files + EXCLUDED.files`;

/**
 * What landed moves from the node's hold to used (what was freed the other
 * way), less what it gives back. A user without a quota holds nothing: only
 * the counters change. Once only: the settle's number ($7, growing on each
 * node) is stored for the node and the user in the same statement, and one
 * not above the stored one changes nothing, so a settle sent again after its
 * answer was lost (it may have committed) is not counted twice. A user
 * removed meanwhile: nothing to change. The user's row is locked first (FOR NO KEY UPDATE, as the
 * UPDATE takes it): the settle's number's row was locked before it, and a removal of the user (its row,
 * then by cascade the number's) and a settle at once deadlocked (found by a review).
 */
const SETTLE = `
  WITH fresh AS (
    INSERT INTO quota_settles (node_id, user_id, seq)
    SELECT $1::text, id, $7::bigint FROM users WHERE id = $2::integer FOR NO KEY UPDATE
    ON CONFLICT (node_id, user_id) DO UPDATE SET seq = EXCLUDED.seq WHERE quota_settles.seq < EXCLUDED.seq
    RETURNING user_id),
  hold AS (
    INSERT INTO quota_holds (node_id, user_id, bytes, files)
    SELECT $1::text, user_id, $5::bigint, $6::bigint FROM fresh WHERE $5::bigint <> 0 OR $6::bigint <> 0
    ON CONFLICT (node_id, user_id) DO UPDATE
      SET bytes = quota_holds.bytes + EXCLUDED.bytes, files = quota_holds.files + EXCLUDED.files)
  UPDATE users SET used_bytes = GREATEST(0, used_bytes + $3), used_files = GREATEST(0, used_files + $4),
    held_bytes = held_bytes + $5, held_files = held_files + $6
  FROM fresh WHERE users.id = fresh.user_id`;

/**
 * A node's holds (one user's, or all when $2 is null) go back to the users'
 * rows, and its settles' numbers go (no settle made before is sent after
 * this). Done twice, the second finds no row: a drop sent again after its
 * answer was lost changes nothing more. The users' rows are locked first,
 * by id, and a row of the node's is deleted only once its user's is locked
 * (joined with `mine`). Before, each hold was deleted, then its user's row
 * updated, in the order the scan found them: a ledger's close deadlocked
 * with a grant of the same user under way (it locks the user's row first),
 * and two nodes stopping (or starting, or one forgotten) at once with holds
 * of the same users, found in other orders, with each other (found by a review).
 */
const DROP = `
  WITH mine AS (
    SELECT id FROM users WHERE id IN (
      SELECT user_id FROM quota_holds WHERE node_id = $1 AND ($2::integer IS NULL OR user_id = $2)
      UNION SELECT user_id FROM quota_settles WHERE node_id = $1 AND ($2::integer IS NULL OR user_id = $2))
    ORDER BY id FOR NO KEY UPDATE),
  numbers AS (DELETE FROM quota_settles WHERE node_id = $1 AND user_id IN (SELECT id FROM mine)),
  dropped AS (
    DELETE FROM quota_holds WHERE node_id = $1 AND user_id IN (SELECT id FROM mine)
    RETURNING user_id, bytes, files)
  UPDATE users SET held_bytes = users.held_bytes - dropped.bytes, held_files = users.held_files - dropped.files
  FROM dropped WHERE users.id = dropped.user_id`;

/** The user's counters, and what this node holds already (a hold a failed drop left). */
const OPEN = `
  SELECT u.used_bytes, u.used_files, COALESCE(h.bytes, 0) AS held_bytes, COALESCE(h.files, 0) AS held_files
  FROM users u LEFT JOIN quota_holds h ON h.user_id = u.id AND h.node_id = $2
  WHERE u.id = $1`;

interface OpenRow {
  used_bytes: number;
  used_files: number;
  held_bytes: number;
  held_files: number;
}

/** settledFor: `taken` once the user's statements so far went through; `away` once one of them failed an attempt. */
export interface UserSettled {
  readonly taken: Promise<void>;
  readonly away: Promise<void>;
}

/**
 * Quota room for the ledgers of one node of several on one PostgreSQL: the
 * node holds a lease of each user's quota (a row of quota_holds) and hands it
 * out locally; it asks the database only when the lease runs out, and then
 * for a little more. A grant is one conditional UPDATE of the user's row, so
 * the nodes' holds and what is used never pass the quota together, however
 * many nodes ask at once. What ends moves from the hold to used, which no
 * transfer waits for: the settles that come within GATHER_MS, or while one
 * statement runs, go together, so a user's many small uploads cost few statements.
 *
 * Settles, opens and drops of one user run in the order they were made (a
 * drop must not take a later ledger's hold). Grants need no place in that
 * order: a settle leaves used + held as it was or lowers it, and changes to
 * a hold add up in any order. (A grant still under way when its ledger is
 * dropped lands after the drop: the user's next ledger on this node takes
 * that hold over if it opens later, and its own drop removes it otherwise.)
 *
 * A settle or drop the database does not take (it is away) is kept, and sent
 * again (with a growing pause, at most a second) until it is taken, the
 * user's statements after it waiting their turn; meanwhile the user's next
 * settles add up in one sum. Before, a failed settle was dropped, so an
 * upload that ended while the database was away was never counted and the
 * usage stayed below the disk for good; and a failed drop kept the node's
 * hold from the other nodes until it restarted (found by a review). At a
 * clean stop each gets one last attempt; what is still not written is said.
 *
 * Node ids must be unique: a node's holds are found, and at its start
 * dropped, by its id.
 */
export class PostgresQuota implements QuotaRooms {
  /** The tail of each user's ordered statements. */
  private readonly queues = new Map<number, Promise<void>>();
  /** Settles not yet sent, summed per user: [used bytes, used files, held bytes, held files]. */
  private readonly pending = new Map<number, number[]>();
  /** Users whose pending settle is gathering others (GATHER_MS), not yet in the queue. */
  private readonly gathering = new Map<number, NodeJS.Timeout>();
  /**
   * stop() has begun: its drop gives back the whole hold, so a settle from
   * now on changes only what is used, never the hold (it might land after the
   * drop and take the same bytes off twice).
   */
  private stopping = false;
  /** The number of the next settle statement: one a retried settle keeps (see SETTLE). */
  private seq = 0;
  /** Statements being retried now; `told`: the database was said to be away, and none has gone through since. */
  private retrying = 0;
  private told = false;
  /** Ends the pauses between attempts (a stop makes the last attempts at once). */
  private readonly wakes = new Set<() => void>();
  /** Per user, those waiting for its statements (settledFor) to hear that one failed an attempt. */
  private readonly failing = new Map<number, Set<() => void>>();
  /** Users' names, for the stop's account of what was not written. */
  private readonly names = new Map<number, string>();
  /** Changes to what is used that were given up at the stop, per user: [bytes, files]. */
  private readonly unsent = new Map<number, number[]>();

  private constructor(
    private readonly pool: pg.Pool,
    private readonly nodeId: string,
    private readonly onError: (err: unknown) => void,
  ) {}

  /**
   * The rooms of node `nodeId`, once the holds it left when it last stopped
   * (or died) are back in the users' rows. `onError`: a statement no one
   * waits for failed, and is sent again until the database takes it (said
   * once per outage).
   */
  static async start(pool: pg.Pool, nodeId: string, onError: (err: unknown) => void): Promise<PostgresQuota> {
    await dropNodeHolds(pool, nodeId);
    return new PostgresQuota(pool, nodeId, onError);
  }

  /**
   * Resolves once every statement made so far has gone through (with the
   * database away: once it is back, or given up at the stop): what this node
   * settled or gave back is then room for the others (until then they may
   * be refused what it freed a moment ago).
   */
  async settled(): Promise<void> {
    for (const userId of [...this.gathering.keys()]) this.sendSettle(userId);
    await Promise.all(this.queues.values());
  }

  /**
   * Resolves once the user's statements made so far (a gathering settle sent
   * now) have gone through, or were given up at the stop. An in-place lock's
   * give waits for it (PostgresWriteLocks): the file's growth is in the
   * user's row before another node may remove the file and take its size off.
   */
  settledFor(userId: number): UserSettled {
    let away: () => void = () => undefined;
    const failed = new Promise<void>((resolve) => (away = resolve));
    const waiting = this.failing.get(userId) ?? new Set<() => void>();
    waiting.add(away);
    this.failing.set(userId, waiting);
    const taken = this.run(userId, async () => undefined).finally(() => {
      waiting.delete(away);
      if (waiting.size === 0 && this.failing.get(userId) === waiting) this.failing.delete(userId);
    });
    return { taken, away: failed };
  }

  /**
   * Everything this node holds goes back (a clean stop); ledgers still open
   * hold nothing any more. Statements the database still does not take get a
   * last attempt; rejects naming the users whose usage was not written (the
   * holds come back when the node starts again).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const wake of this.wakes) wake();
    await this.settled();
    const lost = [...this.unsent].map(([id, [bytes, files]]) => `${this.names.get(id) ?? `user id ${id}`}: ${bytes ?? 0} bytes, ${files ?? 0} files`);
    const not = lost.length > 0 ? `usage not written, to be corrected by hand (${lost.join('; ')})` : '';
    try {
      await dropNodeHolds(this.pool, this.nodeId);
    } catch (err) {
      const holds = `this node's quota holds stay until it starts again (or sluice store forget-node): ${(err as Error).message}`;
      throw new Error(not === '' ? holds : `${not}; ${holds}`, { cause: err });
    }
    if (not !== '') throw new Error(not);
  }

  async open(account: Account): Promise<QuotaRoom> {
    const id = account.id;
    const row = await this.run(id, async () => (await this.pool.query<OpenRow>(OPEN, [id, this.nodeId])).rows[0]);
    let limited = limitedOf(account);
    let lease = leaseOf(account);
    // Unlimited: nothing is held, so nothing moves in or out of a hold.
    const only = (u: Usage): Usage => ({ bytes: limited.bytes ? u.bytes : 0, files: limited.files ? u.files : 0 });
    /**
     * One grant of the user's at a time on this node, the others waiting here: a grant waits in PostgreSQL
     * while another holds the user's row (a node frozen in the middle of a change of the user, an operator's
     * open transaction), up to the lock timeout (connection.ts), keeping its pooled connection. Side by side,
     * five uploads of that user took the pool and every other login of the node failed (found by a review);
     * in turn they hold one.
     */
    let granting: Promise<unknown> = Promise.resolve();
    const grant = (room: Usage): Promise<boolean> => {
      const turn = granting.then(() => this.pool.query(GRANT, [this.nodeId, id, room.bytes, room.files]));
      granting = turn.catch(() => undefined);
      return turn.then((r) => r.rowCount === 1, (err: unknown) => {
        // The user's row held past the lock timeout (connection.ts): the client may try again, as for any busy server.
        if (gaveUp(err)) throw new SluiceError('failure', 'Server busy; try again later', `quota grant: ${(err as Error).message}`);
        throw err;
      });
    };
    return {
      used: { bytes: row?.used_bytes ?? 0, files: row?.used_files ?? 0 },
      room: { bytes: row?.held_bytes ?? 0, files: row?.held_files ?? 0 },
      grow: async (need) => {
        const generous = {
          bytes: need.bytes > 0 ? need.bytes + lease.bytes : 0,
          files: need.files > 0 ? need.files + lease.files : 0,
        };
        if (await grant(generous)) return generous;
        if (await grant(need)) return need;
        throw new SluiceError('quota-exceeded');
      },
      settle: (delta, moved, spare) => {
        // Spare past twice the lease goes back, down to one lease: others may need it.
        const back = only({
          bytes: spare.bytes > 2 * lease.bytes ? spare.bytes - lease.bytes : 0,
          files: spare.files > 2 * lease.files ? spare.files - lease.files : 0,
        });
        const m = only(moved);
        const hold = { bytes: -m.bytes - back.bytes, files: -m.files - back.files };
        if (delta.bytes !== 0 || delta.files !== 0 || hold.bytes !== 0 || hold.files !== 0) {
          this.names.set(id, account.name);
          this.settleLater(id, [delta.bytes, delta.files, hold.bytes, hold.files]);
        }
        return back;
      },
      relimit: (next, room, inflight) => {
        const was = limited;
        limited = limitedOf(next);
        lease = leaseOf(next);
        // The room of a limited dimension is this node's hold. A quota that changed gives back what no
        // transfer has in flight, so that the next grant is checked against it; a dimension that lost its
        // quota gives back all; one that got a quota holds nothing yet (nothing was held without one).
        const one = (d: keyof Usage): { room: number; hold: number } => {
          if (!was[d]) return { room: 0, hold: 0 };
          if (!limited[d]) return { room: 0, hold: -room[d] };
          const back = Math.max(0, room[d] - inflight[d]);
          return { room: room[d] - back, hold: -back };
        };
        const bytes = one('bytes');
        const files = one('files');
        if (bytes.hold !== 0 || files.hold !== 0) this.settleLater(id, [0, 0, bytes.hold, files.hold]);
        return { bytes: bytes.room, files: files.room };
      },
      close: () => void this.run(id, () => this.written(async () => void (await this.pool.query(DROP, [this.nodeId, id])))),
    };
  }

  /** Added to the user's next settle statement, which gathers for GATHER_MS unless one is gathering or waiting its turn. */
  private settleLater(userId: number, change: number[]): void {
    if (this.stopping) change = [change[0] ?? 0, change[1] ?? 0, 0, 0];
    const waiting = this.pending.get(userId);
    if (waiting) {
      change.forEach((n, i) => (waiting[i] = (waiting[i] ?? 0) + n));
      return;
    }
    this.pending.set(userId, change);
    const timer = setTimeout(() => this.sendSettle(userId), GATHER_MS);
    timer.unref();
    this.gathering.set(userId, timer);
  }

  /** The user's gathering settle joins the queue now. */
  private sendSettle(userId: number): void {
    const timer = this.gathering.get(userId);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.gathering.delete(userId);
    void this.enqueue(userId, async () => {
      const sum = this.pending.get(userId) ?? [];
      this.pending.delete(userId);
      const seq = ++this.seq;
      if (await this.written(async () => void (await this.pool.query(SETTLE, [this.nodeId, userId, ...sum, seq])), userId)) return;
      // The hold part is the node's: its drop, at its stop or next start, gives the holds back.
      const lost = this.unsent.get(userId) ?? [0, 0];
      this.unsent.set(userId, [(lost[0] ?? 0) + (sum[0] ?? 0), (lost[1] ?? 0) + (sum[1] ?? 0)]);
    });
  }

  /**
   * `attempt` until it goes through: true. After a failure it is tried again
   * with a growing pause, unless the node is stopping: then one attempt more
   * (at once) and false. Said once per outage, not per attempt.
   */
  private async written(attempt: () => Promise<void>, userId?: number): Promise<boolean> {
    let failed = false;
    try {
      for (let wait = RETRY_MIN_MS; ; wait = Math.min(2 * wait, RETRY_MAX_MS)) {
        const last = this.stopping;
        try {
          await attempt();
          return true;
        } catch (err) {
          if (!failed) this.retrying++;
          failed = true;
          if (userId !== undefined) for (const away of this.failing.get(userId) ?? []) away();
          if (!this.told) {
            this.told = true;
            this.onError(new Error('quota usage or holds not written: kept and sent again until the database takes them', { cause: err }));
          }
          if (last) return false;
          if (!this.stopping) await this.pause(wait);
        }
      }
    } finally {
      if (failed && --this.retrying === 0) this.told = false;
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakes.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.wakes.add(done);
    });
  }

  /** Run `op` after every statement of the user made before it, a gathering settle included. */
  private run<T>(userId: number, op: () => Promise<T>): Promise<T> {
    this.sendSettle(userId);
    return this.enqueue(userId, op);
  }

  private enqueue<T>(userId: number, op: () => Promise<T>): Promise<T> {
    const result = (this.queues.get(userId) ?? Promise.resolve()).then(op);
    const tail = result.then(() => undefined, () => undefined);
    this.queues.set(userId, tail);
    void tail.then(() => {
      if (this.queues.get(userId) === tail) this.queues.delete(userId);
    });
    return result;
  }
}

function limitedOf(account: Account): { bytes: boolean; files: boolean } {
  return { bytes: account.quotaBytes > 0, files: account.quotaFiles > 0 };
}

function leaseOf(account: Account): Usage {
  return {
    bytes: Math.min(LEASE_BYTES, Math.floor(account.quotaBytes / LEASE_SHARE)),
    files: Math.min(LEASE_FILES, Math.floor(account.quotaFiles / LEASE_SHARE)),
  };
}

/** Every hold of node `nodeId` goes back to its users' rows (and its settles' numbers go): at the node's start and clean stop, or by an administrator. */
export async function dropNodeHolds(db: pg.Pool | pg.PoolClient, nodeId: string): Promise<void> {
  await db.query(DROP, [nodeId, null]);
}
