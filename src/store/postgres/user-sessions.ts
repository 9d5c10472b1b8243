import type pg from 'pg';
import type { UserSessionCounts } from '../../coordinator/shared-state.js';

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

const RELEASE = `
  WITH mine AS (
    UPDATE user_sessions SET count = count - 1 WHERE node_id = $1 AND user_name = $2 AND count > 0
    RETURNING user_name)
  UPDATE user_session_totals t SET count = t.count - 1 FROM mine WHERE t.user_name = mine.user_name`;

/** Sessions a node counted before it stopped or died: theirs are gone with it. */
const DROP_NODE = `
  WITH dropped AS (DELETE FROM user_sessions WHERE node_id = $1 RETURNING user_name, count)
  UPDATE user_session_totals t SET count = t.count - dropped.count FROM dropped WHERE t.user_name = dropped.user_name`;

/** Logged-in sessions per user, counted in PostgreSQL across every node; each node's part under its id. */
export class PostgresUserSessions implements UserSessionCounts {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly nodeId: string,
  ) {}

  /** The counts of node `nodeId`, once what it counted before it last stopped (or died) is taken out. Node ids must be unique. */
  static async start(pool: pg.Pool, nodeId: string): Promise<PostgresUserSessions> {
    await dropNodeSessions(pool, nodeId);
    return new PostgresUserSessions(pool, nodeId);
  }

  async claim(user: string, max: number): Promise<boolean> {
    return (await this.pool.query({ name: 'sluice-claim-user-session', text: CLAIM, values: [this.nodeId, user, max] })).rowCount === 1;
  }

  async release(user: string): Promise<void> {
    await this.pool.query({ name: 'sluice-release-user-session', text: RELEASE, values: [this.nodeId, user] });
  }

  /** A clean stop: this node's sessions are over. */
  async stop(): Promise<void> {
    await dropNodeSessions(this.pool, this.nodeId);
  }
}

/** Node `nodeId`'s session counts are taken out of the sums: at its start and clean stop, or by an administrator. */
export async function dropNodeSessions(db: pg.Pool | pg.PoolClient, nodeId: string): Promise<void> {
  await db.query(DROP_NODE, [nodeId]);
}
