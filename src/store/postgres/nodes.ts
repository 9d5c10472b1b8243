import type pg from 'pg';
import { inPlaceFence, monotonicMs } from '../../session/fence.js';
import type { NodeHolding, NodeRegistry } from '../store.js';
import { onConnection, transaction } from './connection.js';
import { KeptConnection } from './kept-connection.js';
import { dropNodeHolds } from './quota.js';
import { dropNodeSessions } from './user-sessions.js';
import { dropNodeWriteLocks } from './write-locks.js';

/** The advisory-lock class of node ids (the second key is the id's hash); migrations use the one-key form. */
const NODE_LOCK_CLASS = 0x736c6e64; // "slnd"

const TAKE = 'SELECT pg_try_advisory_lock($1, hashtext($2)) AS taken';

/**
 * The node's heartbeat, on its lock's connection: it proves the lock held
 * (a session-level lock on that very connection) and tells forget-node the
 * node was alive then.
 */
const BEAT = `INSERT INTO node_heartbeats (node_id, seen_at) VALUES ($1, now())
  ON CONFLICT (node_id) DO UPDATE SET seen_at = now()`;
const BEAT_MS = 1_000;
const SEEN = 'SELECT 1 FROM node_heartbeats WHERE node_id = $1';
/**
 * How long after a heartbeat was sent the node may still write in place
 * (InPlaceFence): it stops by then whatever it notices of its connection.
 */
export const LEASE_MS = 3_000;
/**
 * forget-node refuses a node seen alive within this (twice the lease, on
 * PostgreSQL's clock): by then its lease has run out, the heartbeat's own
 * time in flight and a write issued at the lease's last moment with it.
 */
export const FORGET_AFTER_S = 6;

const LIST = `
  WITH h AS (SELECT node_id, sum(bytes) AS bytes, sum(files) AS files FROM quota_holds GROUP BY node_id),
       s AS (SELECT node_id, sum(count) AS sessions FROM user_sessions GROUP BY node_id)
  SELECT coalesce(h.node_id, s.node_id) AS node_id, coalesce(h.bytes, 0)::bigint AS bytes,
    coalesce(h.files, 0)::bigint AS files, coalesce(s.sessions, 0)::bigint AS sessions
  FROM h FULL JOIN s ON h.node_id = s.node_id ORDER BY 1`;

/**
 * A running node holds a session-level advisory lock on its id for as long
 * as it runs, on a connection of its own: PostgreSQL lets it go when that
 * connection ends, however the node ends. So a second node started with the
 * same id is refused (it would drop the first one's leases and counts as its
 * own), and an administrator can give back what a node that will not return
 * holds only when that node is not running. A lost connection (an error, or
 * no answer to the heartbeat) is made anew and the lock taken again at once;
 * `onLost` hears of the gap, and of a lock someone else took meanwhile.
 */
export class NodeLock {
  private beat: NodeJS.Timeout | null = null;
  private beating: pg.Client | null = null;

  private constructor(
    private readonly connection: KeptConnection,
    private readonly nodeId: string,
  ) {}

  static async take(url: string, nodeId: string, onLost: (err: Error) => void, onForgotten: () => void): Promise<NodeLock> {
    let held = false;
    // In place only while proven held, from now on (one node, SQLite, never fences).
    inPlaceFence.fenced();
    let lock: NodeLock | null = null;
    const connection = new KeptConnection(url, `sluice node ${nodeId}`.slice(0, 63), {
      up: async (client) => {
        const { rows } = await client.query<{ taken: boolean }>(TAKE, [NODE_LOCK_CLASS, nodeId]);
        if (rows[0]?.taken) {
          // Taken again: forget-node, which runs only while nobody holds the lock, removes the heartbeat's row
          // with everything else it gives back, and nothing else removes it while the node runs.
          const forgotten = held && (await client.query(SEEN, [nodeId])).rowCount === 0;
          held = true;
          await beatOn(client, nodeId, inPlaceFence.epoch);
          if (forgotten) onForgotten();
          return;
        }
        const err = new Error(`node id "${nodeId}" is in use by a running node: give each node its own nodeId (SLUICE_NODE_ID)`);
        if (held) onLost(new Error(`node id "${nodeId}" was taken by another process while this node's connection was lost: ${err.message}`));
        throw err;
      },
      down: () => {
        // Whatever rode on the lock (forget-node is no longer refused): in-place writes begun so far stop for good.
        inPlaceFence.lost();
        if (held) onLost(new Error(`the connection holding node id "${nodeId}" was lost; in-place uploads under way end; taking it again`));
      },
    });
    await connection.start();
    lock = new NodeLock(connection, nodeId);
    lock.beat = setInterval(() => lock?.heartbeat(), BEAT_MS);
    lock.beat.unref();
    return lock;
  }

  /**
   * One heartbeat, none while one is still unanswered; one that fails gives the connection up (its lock may be
   * gone). One answered late (PostgreSQL slow, a lock on the table) does not: the lease runs out by itself
   * meanwhile, and in-place writes wait for it back (InPlaceFence.wait). Dropping the connection gave the node
   * lock up and ended every in-place upload under way for a stall of 3 s; a silent link is the kept connection's
   * own probe to find.
   */
  private heartbeat(): void {
    const client = this.connection.current;
    // A query on a connection given up may never settle: only the current one's unanswered beat holds the next back.
    if (!client || this.beating === client) return;
    this.beating = client;
    const done = (): void => {
      if (this.beating === client) this.beating = null;
    };
    beatOn(client, this.nodeId, inPlaceFence.epoch).then(done, () => {
      done();
      this.connection.drop(client);
    });
  }

  async release(): Promise<void> {
    if (this.beat) clearInterval(this.beat);
    const client = this.connection.current;
    // A clean stop is not one to wait out: its heartbeat goes (forget-node need not wait). Best effort.
    await client?.query('DELETE FROM node_heartbeats WHERE node_id = $1', [this.nodeId]).catch(() => undefined);
    await this.connection.close();
  }
}

/** Write the heartbeat on the lock's connection; its answer renews the lease of `epoch` from when it was sent. */
async function beatOn(client: pg.Client, nodeId: string, epoch: number): Promise<void> {
  const since = monotonicMs();
  await client.query(BEAT, [nodeId]);
  inPlaceFence.renewed(epoch, since, LEASE_MS);
}

export class PostgresNodes implements NodeRegistry {
  constructor(private readonly pool: pg.Pool) {}

  /** Each node's holdings, and whether it runs: its lock cannot be taken (tried in a transaction that lets go of it). */
  async list(): Promise<NodeHolding[]> {
    return onConnection(
      this.pool,
      async (client) => {
        await client.query('BEGIN');
        const nodes = await listOn(client);
        for (const n of nodes) n.running = !(await tryLock(client, n.nodeId));
        return nodes;
      },
      // A connection that cannot roll back may still hold the locks it tried: not handed on.
      (client) => client.query('ROLLBACK'),
    );
  }

  async forget(nodeId: string, force = false): Promise<NodeHolding | 'running' | { seenSecondsAgo: number }> {
    return transaction(this.pool, async (c) => {
      // Transaction-level: held until the drops commit, so the node cannot start in between.
      if (!(await tryLock(c, nodeId))) return 'running';
      // Not running, but maybe only cut off (or frozen) and still writing in place until its lease runs out.
      const seen = await c.query<{ ago: number }>(
        'SELECT extract(epoch FROM now() - seen_at)::float8 AS ago FROM node_heartbeats WHERE node_id = $1', [nodeId]);
      const ago = seen.rows[0]?.ago;
      if (!force && ago !== undefined && ago < FORGET_AFTER_S) return { seenSecondsAgo: Math.max(0, ago) };
      await c.query('DELETE FROM node_heartbeats WHERE node_id = $1', [nodeId]);
      const before = (await listOn(c)).find((n) => n.nodeId === nodeId) ?? { nodeId, heldBytes: 0, heldFiles: 0, sessions: 0, running: false };
      await dropNodeHolds(c, nodeId);
      await dropNodeSessions(c, nodeId);
      await dropNodeWriteLocks(c, nodeId);
      return before;
    });
  }
}

async function listOn(db: pg.PoolClient): Promise<{ -readonly [K in keyof NodeHolding]: NodeHolding[K] }[]> {
  const { rows } = await db.query<{ node_id: string; bytes: number; files: number; sessions: number }>(LIST);
  return rows.map((r) => ({ nodeId: r.node_id, heldBytes: r.bytes, heldFiles: r.files, sessions: r.sessions, running: false }));
}

/** Node `nodeId`'s lock for the rest of this transaction, unless a running node holds it. */
async function tryLock(db: pg.PoolClient, nodeId: string): Promise<boolean> {
  const { rows } = await db.query<{ taken: boolean }>('SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS taken', [NODE_LOCK_CLASS, nodeId]);
  return rows[0]?.taken === true;
}
