/**
 * What holding one request or reply costs a channel beyond its bytes, counted
 * with them: its Buffer object, its share of the 8 KiB pool slab it was cut
 * from (shared with the small buffers a Writer made it from, garbage the slab
 * keeps as long as the reply lives), its queue entry and, for a reply on a
 * file's handle, its place among the replies owed. Measured on Node 20, after
 * a full collection, with a channel whose client read nothing: a STAT reply
 * (41 bytes) held about 240 bytes (heap 119, array buffers 120), a WRITE's
 * (30 bytes, owed) about 340 (heap 275, array buffers 66); this figure leaves
 * a margin over the larger. Counted by their bytes alone, 8 MiB of budget
 * held 200,000 STAT replies, about 48 MiB (found by a review: 80,000 STATs
 * never read grew the server by 39 MiB).
 */
export const HELD_OVERHEAD = 384;

/**
 * Bytes one SSH connection may hold for its SFTP channels: requests being
 * worked on (a WRITE's data, a READ's coming reply), replies the client's
 * window has not taken yet, and what the transport has not sent (ssh2 writes
 * to the socket whatever its window allows, however full the socket is). A
 * channel that cannot take its next request's share stops reading, so the
 * client's window shuts; it is woken when bytes come back.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiters = new Set<() => void>();

  /** `backlog`: bytes written to the transport and not yet sent. */
  constructor(
    readonly limit: number,
    private readonly backlog: () => number = () => 0,
  ) {}

  /**
   * Take `n` bytes if they fit. A caller that holds nothing may take while the
   * transport is not full: one request at a time must go through, however large,
   * or it would wait forever.
   */
  tryTake(n: number, holdsNothing: boolean): boolean {
    const unsent = this.backlog();
    if (unsent >= this.limit) return false;
    if (!holdsNothing && this.used + unsent + n > this.limit) return false;
    this.used += n;
    return true;
  }

  /** Bytes that are already spent (a reply being sent): counted, never refused. */
  take(n: number): void {
    this.used += n;
  }

  give(n: number): void {
    if (n === 0) return;
    this.used -= n;
    this.wake();
  }

  /** Room may have come back (bytes given back, the transport drained): let waiting channels try. */
  wake(): void {
    for (const wake of [...this.waiters]) wake();
  }

  /** `wake` runs whenever room may have come back; the returned function unregisters it. */
  watch(wake: () => void): () => void {
    this.waiters.add(wake);
    return () => this.waiters.delete(wake);
  }
}
