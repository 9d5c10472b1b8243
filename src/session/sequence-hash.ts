import { createHash, type Hash } from 'node:crypto';

/** Out-of-order bytes held for the hash at most; beyond that the hash is given up. */
const MAX_REORDER_BYTES = 16 * 1024 * 1024;

/**
 * SHA-256 of the bytes in file order, computed as they pass. Pipelined SFTP
 * reads may complete out of order: early chunks wait (bounded) for the gap to
 * fill. A rewrite, a gap that never fills or too much waiting gives up the
 * hash (null) rather than report a wrong one.
 *
 * Each update is one chunk (at most 256 KiB), hashed on the event loop while
 * an upload's write runs in the thread pool: what it costs is CPU, not
 * waiting; `npm run bench` measures it (audit trail on against off).
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
      this.waiting.set(position, Buffer.from(data));
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

  /** Once: the hash is ended, and bytes that still pass afterwards (a stream not yet torn down) are not hashed. */
  digest(): string | null {
    const hash = this.hash;
    const whole = hash !== null && this.waiting.size === 0;
    this.spoil();
    return whole ? hash.digest('hex') : null;
  }

  /** The bytes hashed are not the bytes transferred after all. */
  spoil(): void {
    this.hash = null;
    this.waiting.clear();
    this.waitingBytes = 0;
  }
}
