import { SluiceError } from './errors.js';

/**
 * Several nodes: may this process still write files in place under the
 * in-place locks it took in the shared store (store/postgres/write-locks.ts)?
 * Those rows are dropped by `sluice store forget-node` once the node's lock
 * connection is gone, so a node cut off from PostgreSQL, or frozen, must stop
 * writing in place before another node can be given the file. The store
 * renews a lease here at each heartbeat that proves its node-id lock still
 * held (until: a moment of this clock a few seconds on); a write in place asks
 * `check` right before it is issued, with no round trip, so a frozen process
 * that resumes finds its lease run out before it writes another byte. A lost
 * lock connection ends the epoch: uploads begun in it never write in place
 * again, even once the lock is back (their rows may have been given away).
 * One node (SQLite) never fences: the lease is endless.
 */
export class InPlaceFence {
  private until = Infinity;
  private current = 0;
  private readonly listeners = new Set<(state: FenceState) => void>();
  /** Writes waiting for the lease back (see wait): woken at each change. */
  private readonly waiting = new Set<() => void>();

  /** The epoch an in-place upload begins in (see check). */
  get epoch(): number {
    return this.current;
  }

  /** The lock connection is gone: every in-place upload begun so far is done writing. */
  lost(): void {
    this.current++;
    this.until = 0;
    this.told();
    this.wake();
  }

  /** The lock was proven held, in `epoch`, at `since` (monotonicMs() when asked): good for `leaseMs` from then. */
  renewed(epoch: number, since: number, leaseMs: number): void {
    if (epoch !== this.current) return;
    this.until = Math.max(this.until === Infinity ? 0 : this.until, since + leaseMs);
    this.told();
    this.wake();
  }

  /** Workers: what they copy (adopt), until on the machine's monotonic clock, which all its processes read alike; null: one node, no fence. */
  state(): FenceState | null {
    return this.until === Infinity ? null : { epoch: this.current, until: this.until };
  }

  /** A worker: the primary's fence (it holds the node lock), as the primary sent it. */
  adopt(state: FenceState): void {
    this.current = state.epoch;
    this.until = state.until;
    this.wake();
  }

  /** The primary: each change of the fence, to send to the workers (adopt). Returns the unsubscribe. */
  watch(listener: (state: FenceState) => void): () => void {
    this.listeners.add(listener);
    return () => void this.listeners.delete(listener);
  }

  private told(): void {
    const state = this.state();
    if (state) for (const listener of this.listeners) listener(state);
  }

  /** Leases from now on (a shared store): none until the first renewal. */
  fenced(): void {
    this.lost();
  }

  /**
   * A write whose check failed only because the lease ran out, in its own
   * epoch (the lock connection never seen lost): wait for the next renewal
   * (a heartbeat answered late: PostgreSQL slow, a table lock, this event
   * loop or the primary's busy) for up to `ms`, then ask `check` again. The
   * lease only ever comes back from a heartbeat answered on the same lock
   * connection, so nothing is written that check would not allow. `stop`
   * (the upload aborted) ends the wait at once.
   */
  async wait(epoch: number, stop: AbortSignal, ms = LEASE_WAIT_MS): Promise<void> {
    if (epoch !== this.current || monotonicMs() < this.until || stop.aborted) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiting.delete(woken);
        stop.removeEventListener('abort', done);
        resolve();
      };
      const woken = (): void => {
        if (epoch !== this.current || monotonicMs() < this.until) done();
      };
      const timer = setTimeout(done, ms);
      this.waiting.add(woken);
      stop.addEventListener('abort', done, { once: true });
    });
  }

  private wake(): void {
    for (const woken of [...this.waiting]) woken();
  }

  /** Null when an upload begun in `epoch` may write in place now; else why not. */
  check(epoch: number): SluiceError | null {
    if (epoch === this.current && monotonicMs() < this.until) return null;
    return new SluiceError('failure', 'Write stopped: this node lost its lock in the shared store; upload again',
      epoch === this.current ? 'in-place write refused: node lease ran out (no heartbeat proved the node lock held)' : 'in-place write refused: the node lock connection was lost since the upload began');
  }
}

/**
 * How long a write in place waits for a late heartbeat before the upload
 * ends failed: a PostgreSQL or event loop held up this long is treated as
 * cut off (the kept connection's own probe gives a silent link up by then).
 */
export const LEASE_WAIT_MS = 10_000;

/** The fence as sent from the primary to its workers (see InPlaceFence.adopt). */
export interface FenceState {
  readonly epoch: number;
  /**
   * monotonicMs() at which the lease runs out. Not performance.timeOrigin + performance.now(): timeOrigin is
   * the wall clock at each process's start, so a clock stepped between the primary's start and a worker's moved
   * the worker's lease by the step (found by a review: stepped forward, every in-place write on a worker started
   * after it was refused; stepped back, a worker wrote in place that long past the lease).
   */
  readonly until: number;
}

/** The machine's monotonic clock in ms (CLOCK_MONOTONIC: the same for every process, never stepped). */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** This process's fence: the PostgreSQL store renews it; nothing else writes it. */
export const inPlaceFence = new InPlaceFence();
