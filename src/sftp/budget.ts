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
