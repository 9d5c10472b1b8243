import type pg from 'pg';
import type { FailureTally } from '../../coordinator/shared-state.js';

/** The highest defender.threshold the configuration allows: an address never needs more times kept. */
const MAX_KEPT = 1000;
/**
 * Addresses kept at most, as in one node's memory (security/failure-tally.ts):
 * past it those whose last offence is oldest are forgotten, so a flood from
 * many addresses cannot grow the table without bound within one window.
 */
const MAX_TRACKED = 100_000;
/** Rows whose last offence left the window, and those past MAX_TRACKED, are deleted at most this often by each node. */
const PRUNE_EVERY_MS = 60_000;
/** A prune that failed is tried again this much later, not at every offence. */
const PRUNE_RETRY_MS = 5_000;

/**
 * The prune waits for no row: it locks those to delete that no one holds, and
 * leaves the others to the next prune (one node's or another's). A DELETE of
 * them all locked them in the order it met them, which differs between two
 * nodes' prunes when a row moved between their snapshots (an offence counted
 * by a node whose clock lags leaves it old, and writes its new version after
 * the others): each then held a row the other wanted, and PostgreSQL ended
 * one of them, whose add failed after its offence was counted (found by a
 * review).
 */
const PRUNE = `
  WITH gone AS (
    SELECT address FROM offences WHERE last_at <= $1
      OR last_at < (SELECT last_at FROM offences ORDER BY last_at DESC OFFSET $2 LIMIT 1)
    FOR UPDATE SKIP LOCKED)
  DELETE FROM offences o USING gone WHERE o.address = gone.address`;

/**
 * One statement per offence: the upsert locks the address's row, so offences
 * counted at once on several nodes take turns and each sees the others'
 * (five on two nodes reach five). The times before the window are dropped
 * as each one is added. It locks that one row, and waits (for a prune that
 * holds it, say) only before it has it: it takes part in no deadlock.
 */
const ADD = `
  INSERT INTO offences (address, times, last_at) VALUES ($1, ARRAY[$2::bigint], $2)
  ON CONFLICT (address) DO UPDATE SET
    times = ARRAY(SELECT t FROM unnest(offences.times) AS t WHERE t > $3 ORDER BY t DESC LIMIT $4) || $2::bigint,
    last_at = GREATEST(offences.last_at, $2)
  RETURNING cardinality(times) AS n`;

/** The defender's offences per address, counted in PostgreSQL across every node. */
export class PostgresFailureTally implements FailureTally {
  private pruneAfter = 0;

  constructor(private readonly pool: pg.Pool) {}

  async add(ip: string, now: number, since: number): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(ADD, [ip, now, since, MAX_KEPT - 1]);
    if (now >= this.pruneAfter) {
      this.pruneAfter = now + PRUNE_EVERY_MS;
      // Addresses that stopped offending: the table holds only the window's, and at most MAX_TRACKED. The offence
      // is counted whatever the prune meets: a prune that failed (a statement timeout, a lost connection) failed
      // the add after its offence was written, and the defender skipped that offence's ban check (found by a
      // review). It is tried again after PRUNE_RETRY_MS; what it would have removed only waits.
      await this.pool.query(PRUNE, [since, MAX_TRACKED - 1]).catch((err: unknown) => {
        this.pruneAfter = now + PRUNE_RETRY_MS;
        process.emitWarning(`offences not pruned (tried again in ${PRUNE_RETRY_MS / 1000} s): ${(err as Error).message}`, 'SluiceStoreWarning');
      });
    }
    return rows[0]?.n ?? 1;
  }

  async clear(ip: string): Promise<void> {
    await this.pool.query('DELETE FROM offences WHERE address = $1', [ip]);
  }
}
