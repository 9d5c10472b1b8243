import type pg from 'pg';
import type { UserSessionCounts } from '../../coordinator/shared-state.js';
import { storeAway, transaction } from './connection.js';

/*
 * The order of locks, in every statement and transaction here (a cycle is a deadlock, which PostgreSQL
 * ends a second later by failing one of them): a user's row of user_session_totals first, then the
 * node's row of user_sessions. A statement of several users locks their sums in the order of their names.
 */

/**
 * One more session of the user unless the sum over nodes is at the limit
 * ($3; 0: none), and this node's count with it. The upsert of the sum locks
 * its row and checks the limit on what the last claim left there, so two
 * nodes cannot both take the last slot.
 */
const CLAIM = `
  WITH total AS (
    INSERT INTO user_session_totals (user_name, count) VALUES ($2, 1)
    ON CONFLICT (user_name) DO UPDATE SET count = user_session_totals.count + 1
    WHERE $3 = 0 OR user_session_totals.count < $3
    RETURNING user_name)
  INSERT INTO user_sessions (node_id, user_name, count) SELECT $1, user_name, 1 FROM total
  ON CONFLICT (node_id, user_name) DO UPDATE SET count = user_sessions.count + 1`;

/**
 * The sum's row is locked first, as a claim and a repair lock it: found by a loaded run, a release that
 * locked this node's row first deadlocked with a claim of the same user (each holding the row the
 * other wanted), and PostgreSQL ended one of them a second later: a login refused (451), or a count owed.
 */
const RELEASE = `
  WITH total AS (
    SELECT user_name FROM user_session_totals WHERE user_name = $2 FOR UPDATE),
  mine AS (
    UPDATE user_sessions SET count = count - 1 WHERE node_id = $1 AND user_name = (SELECT user_name FROM total) AND count > 0
    RETURNING user_name)
  UPDATE user_session_totals t SET count = t.count - 1 FROM mine WHERE t.user_name = mine.user_name`;

/**
 * Sessions a node counted before it stopped or died: theirs are gone with it. The sums' rows are locked
 * first, in the order of their names, and a row of the node's is deleted only once its sum is locked (it
 * is joined with `sums`). Before, each node row was deleted, then its sum updated, in the order the scan
 * found them: a stop deadlocked with a release of the node's that locked the sum first (the stop of a
 * node whose last sessions were ending), and two nodes stopping (or starting, or one forgotten) at once
 * with sessions of the same users, found in other orders, deadlocked with each other (found by a review).
 */
const DROP_NODE = `
  WITH sums AS (
    SELECT user_name FROM user_session_totals WHERE user_name IN (SELECT user_name FROM user_sessions WHERE node_id = $1)
    ORDER BY user_name FOR UPDATE),
  dropped AS (
    DELETE FROM user_sessions WHERE node_id = $1 AND user_name IN (SELECT user_name FROM sums) RETURNING user_name, count)
  UPDATE user_session_totals t SET count = t.count - dropped.count FROM dropped WHERE t.user_name = dropped.user_name`;

/** The sum's row first, as a claim locks it, then this node's. */
const LOCK_TOTAL = 'SELECT count FROM user_session_totals WHERE user_name = $1 FOR UPDATE';
const LOCK_MINE = 'SELECT count FROM user_sessions WHERE node_id = $1 AND user_name = $2 FOR UPDATE';
const SET_MINE = `
  INSERT INTO user_sessions (node_id, user_name, count) VALUES ($1, $2, $3)
  ON CONFLICT (node_id, user_name) DO UPDATE SET count = EXCLUDED.count`;
const DELETE_MINE = 'DELETE FROM user_sessions WHERE node_id = $1 AND user_name = $2';
const MOVE_TOTAL = `
  INSERT INTO user_session_totals (user_name, count) VALUES ($1, GREATEST(0, $2::integer))
  ON CONFLICT (user_name) DO UPDATE SET count = GREATEST(0, user_session_totals.count + $2::integer)`;

/** A repair that fails is tried again after this long, doubling up to the most. */
const RETRY_MIN_MS = 100;
const RETRY_MAX_MS = 1_000;

/**
 * Logged-in sessions per user, counted in PostgreSQL across every node; each
 * node's part under its id.
 *
 * A release the database does not take (it is away) is not tried again as
 * it was: a statement whose answer was lost may have committed, and a second
 * one would count the user below the truth, past the limit. The node knows
 * the truth, its sessions of the user that are live now, and sets its row to
 * that (and the sum by the difference, in one transaction) once the database
 * answers: set twice, it is still right. A claim that failed is set right the
 * same way (it too may have committed). Before, a session that ended while
 * the database was away kept its slot on every node until this node started
 * again, and with maxSessionsPerUser 1 the user could not log in anywhere
 * (found by a review).
 */
export class PostgresUserSessions implements UserSessionCounts {
  /** This node's live sessions of each user: claims that succeeded, less releases. */
  private readonly live = new Map<string, number>();
  /** Users whose row here may be off (a release or claim failed): to be set to `live`. */
  private readonly owed = new Set<string>();
  /** Claims and releases of a user with a statement out now, which a repair waits for. */
  private readonly out = new Map<string, number>();
  private readonly drained = new Map<string, () => void>();
  /** A repair of the user is under way: its claims wait for it, so that it sets a count that holds. */
  private readonly repairs = new Map<string, Promise<void>>();
  private repairing: Promise<void> | null = null;
  /** The database was said to be away, and nothing owed has reached it since. */
  private told = false;
  private stopped = false;
  /** Ends the repairs' pause between attempts: a stop ends them (its drop of this node's rows sets every count right). */
  private wake: (() => void) | null = null;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly nodeId: string,
    private readonly onError: (err: unknown) => void,
  ) {}

  /**
   * The counts of node `nodeId`, once what it counted before it last stopped
   * (or died) is taken out. Node ids must be unique. `onError`: a count is
   * off while the database is away (said once per outage), or was still off
   * at the stop.
   */
  static async start(pool: pg.Pool, nodeId: string, onError: (err: unknown) => void = () => undefined): Promise<PostgresUserSessions> {
    await dropNodeSessions(pool, nodeId);
    return new PostgresUserSessions(pool, nodeId, onError);
  }

  async claim(user: string, max: number): Promise<boolean> {
    for (let repair = this.repairs.get(user); repair; repair = this.repairs.get(user)) await repair;
    this.enter(user);
    try {
      const ok = (await this.pool.query({ name: 'sluice-claim-user-session', text: CLAIM, values: [this.nodeId, user, max] })).rowCount === 1;
      if (ok) this.live.set(user, (this.live.get(user) ?? 0) + 1);
      return ok;
    } catch (err) {
      // Refused here, but it may have been counted there.
      this.owe(user);
      throw storeAway(err);
    } finally {
      this.leave(user);
    }
  }

  /** Never rejects: what the database does not take now is set right once it answers. */
  async release(user: string): Promise<void> {
    const left = (this.live.get(user) ?? 0) - 1;
    if (left < 0) return;
    if (left === 0) this.live.delete(user);
    else this.live.set(user, left);
    // A repair owed or under way sets the row to what is live, this release included.
    if (this.owed.has(user) || this.repairs.has(user)) {
      this.owe(user);
      return;
    }
    this.enter(user);
    try {
      await this.pool.query({ name: 'sluice-release-user-session', text: RELEASE, values: [this.nodeId, user] });
    } catch (err) {
      this.tell(err);
      this.owe(user);
    } finally {
      this.leave(user);
    }
  }

  /**
   * A clean stop: this node's sessions are over, and its rows go (which also
   * sets right whatever was owed). Rejects, saying which users' counts were
   * off, when the database does not take it: they stay until the node starts again.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    await this.repairing;
    try {
      await dropNodeSessions(this.pool, this.nodeId);
    } catch (err) {
      const off = this.owed.size > 0 ? `; the counts of ${[...this.owed].join(', ')} were off already (sessions ended while the database was away)` : '';
      throw new Error(`this node's session counts stay in the sums until it starts again (or sluice store forget-node)${off}: ${(err as Error).message}`, { cause: err });
    }
  }

  private enter(user: string): void {
    this.out.set(user, (this.out.get(user) ?? 0) + 1);
  }

  private leave(user: string): void {
    const n = (this.out.get(user) ?? 1) - 1;
    if (n > 0) {
      this.out.set(user, n);
      return;
    }
    this.out.delete(user);
    this.drained.get(user)?.();
  }

  /** Once per outage: the first failure says so, the attempts after it do not. */
  private tell(err: unknown): void {
    if (this.told) return;
    this.told = true;
    this.onError(new Error('session counts not written: set right once the database answers, tried every second', { cause: err }));
  }

  private owe(user: string): void {
    this.owed.add(user);
    if (this.repairing || this.stopped) return;
    this.repairing = this.repairAll().finally(() => (this.repairing = null));
  }

  /** Every owed user's row set right, tried again with a growing pause (at most a second) until the database takes them. */
  private async repairAll(): Promise<void> {
    let wait = RETRY_MIN_MS;
    while (this.owed.size > 0 && !this.stopped) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        timer.unref();
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
      if (this.stopped) return;
      try {
        for (const user of [...this.owed]) await this.repair(user);
        wait = RETRY_MIN_MS;
        if (this.owed.size === 0) this.told = false;
      } catch (err) {
        this.tell(err);
        wait = Math.min(2 * wait, RETRY_MAX_MS);
      }
    }
  }

  /** Node row := the user's live sessions here, the sum moved by the difference; set twice, still right. */
  private async repair(user: string): Promise<void> {
    let open = (): void => undefined;
    this.repairs.set(user, new Promise<void>((resolve) => (open = resolve)));
    try {
      // Claims wait from here on; those (and releases) with a statement out are let finish first.
      if (this.out.has(user)) await new Promise<void>((resolve) => this.drained.set(user, resolve));
      this.drained.delete(user);
      this.owed.delete(user);
      const count = this.live.get(user) ?? 0;
      try {
        await transaction(this.pool, async (c) => {
          await c.query(LOCK_TOTAL, [user]);
          const was = (await c.query<{ count: number }>(LOCK_MINE, [this.nodeId, user])).rows[0]?.count ?? 0;
          if (count > 0) await c.query(SET_MINE, [this.nodeId, user, count]);
          else await c.query(DELETE_MINE, [this.nodeId, user]);
          if (count !== was) await c.query(MOVE_TOTAL, [user, count - was]);
        });
      } catch (err) {
        this.owed.add(user);
        throw err;
      }
    } finally {
      this.repairs.delete(user);
      open();
    }
  }
}

/** Node `nodeId`'s session counts are taken out of the sums: at its start and clean stop, or by an administrator. */
export async function dropNodeSessions(db: pg.Pool | pg.PoolClient, nodeId: string): Promise<void> {
  await db.query(DROP_NODE, [nodeId]);
}
