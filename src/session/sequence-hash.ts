import { createHash, type Hash } from 'node:crypto';

/** Out-of-order bytes held for the hash at most; beyond that the hash is given up. */
const MAX_REORDER_BYTES = 16 * 1024 * 1024;

/**
 * SHA-256 of the bytes in file order, computed as they pass. Pipelined SFTP
 * reads may complete out of order: early chunks wait (bounded) for the gap to
 * fill. A rewrite, a gap that never fills or too much waiting gives up the
 * hash (null) rather than report a wrong one.
 *
 * Each update is one chunk (at most 256 KiB, ~0.15 ms), fed while an upload's
 * write runs in the thread pool. SHA-256 costs 0.6 ms of CPU per MiB even
 * with SHA-NI; on the two-core bench machine, shared with the client, that
 * costs 12-42% of throughput (npm run bench). A hash worker thread (1 MiB
 * batches moved to it) took 0.5 ms/MiB off the event loop but cost more CPU
 * in all, and throughput with it was no better over SFTP and FTPS and worse
 * over plain FTP (upload 412 against 640 MiB/s, 3.2 against 1.9 ms of
 * process CPU per MiB). A variant copying into a shared-memory ring instead
 * (nothing moved between threads) did no better: plain FTP upload 363
 * against 410, download 539 against 521. On this machine the CPU runs out,
 * not the loop.
 */
export class SequenceHash {
  private hash: Hash | null = createHash('sha256');
  private readonly waiting = new Map<number, Buffer>();
  private waitingBytes = 0;
  constructor(private next: number) {}

  update(position: number, data: Buffer): void {
    if (!this.hash || data.length === 0) return;
    if (position < this.next) return this.spoil();
    if (position > this.next) {
      this.waiting.set(position, data);
      this.waitingBytes += data.length;
      if (this.waitingBytes > MAX_REORDER_BYTES) this.spoil();
      return;
    }
    this.hash.update(data);
    this.next += data.length;
    for (let more = this.waiting.get(this.next); more; more = this.waiting.get(this.next)) {
      this.waiting.delete(this.next);
      this.waitingBytes -= more.length;
      this.hash.update(more);
      this.next += more.length;
    }
  }

  digest(): string | null {
    if (!this.hash || this.waiting.size > 0) return null;
    return this.hash.digest('hex');
  }

  /** The bytes hashed are not the bytes transferred after all. */
  spoil(): void {
    this.hash = null;
    this.waiting.clear();
    this.waitingBytes = 0;
  }
}
