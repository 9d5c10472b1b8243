import type pg from 'pg';
import type { SharedWriteLocks } from '../../session/quota.js';
import type { UserSettled } from './quota.js';

/**
 * Taken, or this node's already (a take whose answer was lost): the row is
 * this node's now. The file is the key, whoever's session asks: two users
 * may share a home (migrations/postgres/013).
 */
const TAKE = `
  INSERT INTO write_locks (user_id, inode, node_id) VALUES ($1, $2, $3)
  ON CONFLICT (inode) DO UPDATE SET node_id = EXCLUDED.node_id, user_id = EXCLUDED.user_id
  WHERE write_locks.node_id = EXCLUDED.node_id`;

const GIVE = 'DELETE FROM write_locks WHERE inode = $1 AND node_id = $2';

/**
 * The users' rows first, by id (FOR KEY SHARE: only a removal of the user waits, as it waits for a take's
 * foreign key), and a row of the node's deleted only once its user's is locked (joined with `mine`): the
 * order of quota.ts, a user's row before what hangs off it. Before, the node's rows were deleted in the
 * order its index gave them, and a removal of a user with two files written in place on the node (its row,
 * then the cascade, in the order of the key) deadlocked with the node's stop, start or forget-node (found
 * by a review).
 */
const DROP_NODE = `
  WITH mine AS (
    SELECT id FROM users WHERE id IN (SELECT user_id FROM write_locks WHERE node_id = $1) ORDER BY id FOR KEY SHARE)
  DELETE FROM write_locks WHERE node_id = $1 AND user_id IN (SELECT id FROM mine)`;

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;

/** A lock row this node has, or may have, in the table. */
interface Row {
  /** A session of this node holds the lock. */
  held: boolean;
  /** The row is being deleted (retried until the store takes it); a take waits for that first. */
  giving: Promise<void> | null;
}

/**
 * The in-place locks of several nodes on one PostgreSQL: a row per locked
 * file (its inode, whichever user's session locks it), naming its node. A
 * take is one conditional insert, so two nodes cannot both get a file. Each
 * node's ledgers lock the file (dev:ino) among its own sessions first, so a
 * take of an inode this node holds already is of another file with the same
 * inode number (another file system): refused, as one that waits its turn. A give is not waited for: the row stays, and keeps
 * the file from the other nodes, until its delete has run, retried while the
 * database is away (the row errs on the side of a refusal, never of a second
 * writer). This node's next take of the same file waits for that delete.
 */
export class PostgresWriteLocks implements SharedWriteLocks {
  private readonly rows = new Map<string, Row>();
  private stopped = false;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly nodeId: string,
    private readonly onError: (err: unknown) => void,
    private readonly settled: (userId: number) => UserSettled,
  ) {}

  /**
   * Node `nodeId`'s locks, once those it left when it last stopped (or died)
   * are gone. `settled`: the node's quota statements of a user made so far
   * (PostgresQuota.settledFor), which a give waits for.
   */
  static async start(pool: pg.Pool, nodeId: string, onError: (err: unknown) => void, settled: (userId: number) => UserSettled): Promise<PostgresWriteLocks> {
    await dropNodeWriteLocks(pool, nodeId);
    return new PostgresWriteLocks(pool, nodeId, onError, settled);
  }

  async take(userId: number, inode: string): Promise<boolean> {
    const key = inode;
    for (let row = this.rows.get(key); row; row = this.rows.get(key)) {
      // Held here: by the local lock, another file (dev) of the same inode. Its give must not free this one.
      if (!row.giving) return false;
      await row.giving;
    }
    const row: Row = { held: true, giving: null };
    this.rows.set(key, row);
    let taken = false;
    try {
      taken = (await this.pool.query(TAKE, [userId, inode, this.nodeId])).rowCount === 1;
    } finally {
      // Refused, or no answer: an insert that did commit must not be left behind.
      if (!taken) void this.give(userId, inode);
    }
    return taken;
  }

  /**
   * The row goes once the user's quota statements made before it (the
   * settle of what the lock's writer grew the file by) have gone through:
   * before (found by a loaded test run), the delete went at once and the
   * settle 50 ms later, so another node could take the lock, remove the file
   * and take its whole size off the usage first; floored at 0 there, the
   * growth then landed on a file gone, and the usage stayed above the disk.
   * Resolves after the delete's first attempt, or once a statement it waits
   * for failed one (the database is away: the row stays, a refusal).
   */
  give(userId: number, inode: string): Promise<void> {
    const key = inode;
    const row = this.rows.get(key);
    if (!row || row.giving) return Promise.resolve();
    row.held = false;
    let tried: () => void = () => undefined;
    const firstTry = new Promise<void>((resolve) => (tried = resolve));
    const settled = this.settled(userId);
    void settled.away.then(() => tried());
    row.giving = settled.taken.then(() => this.deleted(inode, tried)).then(() => void this.rows.delete(key));
    return firstTry;
  }

  /** The row's delete, tried until the store takes it or the node stops (its stop drops every row). */
  private async deleted(inode: string, tried: () => void): Promise<void> {
    let told = false;
    for (let wait = RETRY_MIN_MS; !this.stopped; wait = Math.min(2 * wait, RETRY_MAX_MS)) {
      try {
        await this.pool.query(GIVE, [inode, this.nodeId]);
        return;
      } catch (err) {
        if (!told) this.onError(err);
        told = true;
        await new Promise((resolve) => setTimeout(resolve, wait).unref());
      } finally {
        tried();
      }
    }
    tried();
  }

  /** A clean stop: no session of this node holds a lock any more. */
  async stop(): Promise<void> {
    this.stopped = true;
    await dropNodeWriteLocks(this.pool, this.nodeId);
  }
}

/** Every lock of node `nodeId` goes: at the node's start and clean stop, or by an administrator. */
export async function dropNodeWriteLocks(db: pg.Pool | pg.PoolClient, nodeId: string): Promise<void> {
  await db.query(DROP_NODE, [nodeId]);
}
