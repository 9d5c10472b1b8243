/**
 * Turns for the writes an administrator makes (users, keys, permissions), at
 * most `max` at once on this process's pool, the rest waiting here in order.
 * Such a write may wait in PostgreSQL for a row another holds (an operator's
 * open transaction in psql, a node frozen in the middle of one) up to the
 * lock timeout (connection.ts), and it holds its pooled connection meanwhile. Unbounded,
 * five admin API requests on one such user took every connection of the pool
 * (found by a review), and every login of the node then failed after the
 * pool's 10 s wait for a connection, /readyz too, until the row was let go;
 * logins and the counts they take keep the rest of the pool.
 */
export class WriteTurns {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(write: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await write();
    } finally {
      // The turn passes straight to the next in line, still counted.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
