import type pg from 'pg';
import { noticeObject, type Subscriber } from './notices.js';

/**
 * Where an administrator ends sessions on every node: an address banned
 * (PostgresBans.add, in the statement that stores the ban: the admin API,
 * `sluice ban add`) or a user's sessions ended (DELETE /users/NAME/sessions,
 * `sluice session kill --user`). Each node ends its own, as the node that
 * took the request ends its own. The defender's bans are not sent: the
 * sessions an address has logged in go on when it guesses (SECURITY.md).
 */
export const SESSION_ENDS_CHANNEL = 'sluice_session_ends';

/**
 * Each end is also a row of session_ends (migrations/postgres/014), written
 * in the statement that sends its notice, with the number the notice
 * carries: a node that listens again reads those it missed. Rows older than
 * this go, pruned by the statements that add one.
 */
const KEPT = "interval '1 day'";
const KEPT_MS = 24 * 3600_000;

/**
 * The end's row, and its notice with the row's number; `rows` yields the address or user and reason, as the notice names them.
 * The prune locks the old rows no one holds and leaves the others to the next end, so it waits for no row: a DELETE of them
 * all locked them in its plan's order (the table's, or the index's on `at`), and two ends at once whose plans differed each
 * held a row the other wanted; PostgreSQL ended one, a ban or a session kill refused (found by a review).
 */
export function storeSessionEnd(rows: string): string {
  return `ended AS (INSERT INTO session_ends (address, user_name, reason) ${rows} RETURNING seq, address, user_name, reason),
    expired AS (SELECT seq FROM session_ends WHERE at < now() - ${KEPT} FOR UPDATE SKIP LOCKED),
    pruned AS (DELETE FROM session_ends s USING expired WHERE s.seq = expired.seq)
    SELECT pg_notify('${SESSION_ENDS_CHANNEL}', json_strip_nulls(json_build_object(
      'seq', seq, 'address', address, 'user', user_name, 'reason', reason))::text) FROM ended`;
}

/** Longer is no ban's address nor user's name, nor a reason the API takes (anyone with access to the database may NOTIFY). */
const MAX_ADDRESS = 64;
const MAX_USER = 64;
const MAX_REASON = 200;

/** Tell every node, this one included, to end `user`'s sessions with `reason`: one statement, stored with its notice. */
export async function endUserSessionsEverywhere(pool: pg.Pool, user: string, reason: string): Promise<void> {
  await pool.query(`WITH ${storeSessionEnd('VALUES (NULL, $1::text, $2::text)')}`, [user, reason]);
}

interface EndRow {
  seq: string;
  address: string | null;
  user_name: string | null;
  reason: string | null;
  /** How long ago it was made, by the database's clock (the one that stamped it): no node's clock is compared with another's. */
  age_ms: number;
}

/**
 * Addresses banned and users whose sessions were ended by an administrator
 * on any node, passed on so that each node ends those sessions. While the
 * notices connection is lost these are missed; once it listens again, the
 * ends stored since this node first listened that it has not acted on are
 * read and acted on (up to a day back: older ones are pruned).
 */
export class SessionEnds implements Subscriber {
  private readonly banned = new Set<(address: string, before: number | null) => void>();
  private readonly users = new Set<(user: string, reason: string, before: number | null) => void>();
  /** The newest end stored when this node first listened: the ones before concern sessions it never had. */
  private from: string | null = null;
  /** The ends acted on since (their numbers, and when), so that neither a notice nor a read acts twice. */
  private readonly seen = new Map<string, number>();

  onAddress(listener: (address: string, before: number | null) => void): void {
    this.banned.add(listener);
  }

  onUser(listener: (user: string, reason: string, before: number | null) => void): void {
    this.users.add(listener);
  }

  notice(payload: string): void {
    const o = noticeObject(payload);
    if (o === null) return;
    // A number it does not carry (a notice sent by hand, or by a node from before 014) is acted on as it comes.
    const seq = typeof o.seq === 'number' && Number.isSafeInteger(o.seq) ? String(o.seq) : null;
    this.act(seq, o.address, o.user, o.reason, null);
  }

  async listening(client: pg.Client): Promise<void> {
    if (this.from === null) {
      const { rows } = await client.query<{ seq: string }>('SELECT COALESCE(max(seq), 0) AS seq FROM session_ends');
      this.from = rows[0]?.seq ?? '0';
      return;
    }
    // After LISTEN (Notices.listen): what commits from here on comes as a notice too, and is acted on once.
    // Not older than KEPT: a row outlives that until the next end prunes it, and its number is forgotten here after twice that.
    // Each says when it was made, on this node's clock: it ends the sessions that were live then, as the notice would
    // have, not those logged in since (a user made again under the name, this node's own end read back; found by a review).
    const { rows } = await client.query<EndRow>(
      `SELECT seq, address, user_name, reason, (extract(epoch FROM now() - at) * 1000)::float8 AS age_ms
       FROM session_ends WHERE seq > $1 AND at >= now() - ${KEPT} ORDER BY seq`, [this.from]);
    const now = Date.now();
    for (const r of rows) this.act(String(r.seq), r.address, r.user_name, r.reason, now - Math.max(0, r.age_ms));
  }

  lost(): void {}

  private act(seq: string | null, address: unknown, user: unknown, reason: unknown, before: number | null): void {
    if (seq !== null) {
      if (this.seen.has(seq)) return;
      // In the order acted on: those long pruned from the table, which no read can bring again, go from the front.
      const old = Date.now() - 2 * KEPT_MS;
      for (const [s, at] of this.seen) {
        if (at >= old) break;
        this.seen.delete(s);
      }
      this.seen.set(seq, Date.now());
    }
    if (typeof address === 'string' && address !== '' && address.length <= MAX_ADDRESS) {
      for (const listener of this.banned) listener(address, before);
    } else if (typeof user === 'string' && user !== '' && user.length <= MAX_USER
      && typeof reason === 'string' && reason.length <= MAX_REASON) {
      for (const listener of this.users) listener(user, reason, before);
    }
  }
}
