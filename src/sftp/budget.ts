/**
 * Bytes one SSH connection may hold for its SFTP channels: requests being
 * worked on (a WRITE's data, a READ's coming reply) and replies the client has
 * not taken yet. A channel that cannot take its next request's share stops
 * reading, so the client's window shuts; it is woken when bytes come back.
 */
export class ByteBudget {
  private used = 0;
  private readonly waiters = new Set<() => void>();

  constructor(readonly limit: number) {}

  /**
   * Take `n` bytes if they fit. A caller that holds nothing may always take:
   * one request at a time must go through, however large, or it would wait forever.
   */
  tryTake(n: number, holdsNothing: boolean): boolean {
    if (!holdsNothing && this.used + n > this.limit) return false;
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
    for (const wake of [...this.waiters]) wake();
  }

  get held(): number {
    return this.used;
  }

  /** `wake` runs whenever bytes come back; the returned function unregisters it. */
  watch(wake: () => void): () => void {
    this.waiters.add(wake);
    return () => this.waiters.delete(wake);
  }
}
