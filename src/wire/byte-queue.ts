/** A chunk under this many bytes is copied rather than held, when it has to wait. */
const SMALL = 1024;
/**
 * Sizes of the buffers small chunks are copied into: twice the bytes waiting,
 * within these bounds, so that a few waiting bytes (one partial command on
 * each of thousands of connections) hold a few hundred bytes, not ROOM.
 */
const MIN_ROOM = 256;
const ROOM = 16 * 1024;

/**
 * Bytes a protocol reader has received and not yet taken (a command line,
 * an SFTP packet), however the peer chose to cut them into chunks: one
 * byte per TCP segment or per SSH message is as legal as one per request,
 * and must cost no more than the bytes themselves.
 *
 * - A chunk that arrives while nothing waits is held as it came, not
 *   copied: the common case, a whole request in one chunk, costs nothing.
 * - A small chunk that arrives while bytes wait is copied after them in a
 *   buffer of the queue's own: held as it came, each would cost its buffer
 *   object and array slot, about two hundred bytes of heap for one of data.
 * - take() copies only when what it takes spans chunks, and then only those
 *   bytes; what it leaves stays where it was. Its cost is the bytes taken,
 *   never the bytes waiting (an earlier framer joined every waiting chunk on
 *   each call: quadratic in the number of chunks).
 *
 * A buffer take() returns stays valid: nothing is ever written over bytes
 * already queued.
 */
export class ByteQueue {
  private chunks: Buffer[] = [];
  private waiting = 0;
  /** Where small chunks are copied to while bytes wait; `roomAt` is its first free byte. */
  private room: Buffer | null = null;
  private roomAt = 0;

  /** Bytes queued. */
  get size(): number {
    return this.waiting;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.waiting === 0 || chunk.length >= SMALL) this.chunks.push(chunk);
    else this.copyIn(chunk);
    this.waiting += chunk.length;
  }

  /** The first `n` bytes (n <= size), left queued. */
  peek(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    return first.length >= n ? first.subarray(0, n) : this.gather(n, false);
  }

  /** The first `n` bytes (n <= size), taken off the queue. */
  take(n: number): Buffer {
    const first = this.chunks[0] as Buffer;
    if (first.length < n) return this.gather(n, true);
    if (first.length > n) this.chunks[0] = first.subarray(n);
    else this.chunks.shift();
    this.taken(n);
    return first.subarray(0, n);
  }

  /** Everything queued, taken off (an empty buffer when nothing waits): a line reader's whole line. */
  takeAll(): Buffer {
    return this.waiting === 0 ? Buffer.alloc(0) : this.take(this.waiting);
  }

  /** Drop everything queued. */
  clear(): void {
    this.chunks = [];
    this.taken(this.waiting);
  }

  private copyIn(chunk: Buffer): void {
    if (this.room === null || this.roomAt + chunk.length > this.room.length) {
      this.room = Buffer.allocUnsafeSlow(Math.min(ROOM, Math.max(MIN_ROOM, 2 * (this.waiting + chunk.length))));
      this.roomAt = 0;
    }
    chunk.copy(this.room, this.roomAt);
    const last = this.chunks[this.chunks.length - 1] as Buffer;
    // Grow the last chunk when it is the room's bytes just before these.
    if (last.buffer === this.room.buffer && last.byteOffset + last.length === this.roomAt) {
      this.chunks[this.chunks.length - 1] = this.room.subarray(last.byteOffset, this.roomAt + chunk.length);
    } else {
      this.chunks.push(this.room.subarray(this.roomAt, this.roomAt + chunk.length));
    }
    this.roomAt += chunk.length;
  }

  /** The first `n` bytes, spanning chunks, copied into one buffer; consumed if `consume`. */
  private gather(n: number, consume: boolean): Buffer {
    const out = Buffer.allocUnsafe(n);
    let filled = 0;
    let whole = 0;
    while (filled < n) {
      const chunk = this.chunks[whole] as Buffer;
      const k = Math.min(chunk.length, n - filled);
      chunk.copy(out, filled, 0, k);
      filled += k;
      if (k < chunk.length) {
        if (consume) this.chunks[whole] = chunk.subarray(k);
        break;
      }
      whole++;
    }
    if (consume) {
      // One splice for every chunk used up: shifting them one by one is quadratic in their number.
      this.chunks.splice(0, whole);
      this.taken(n);
    }
    return out;
  }

  private taken(n: number): void {
    this.waiting -= n;
    // Nothing waits: the room goes with the bytes (an idle connection holds none).
    if (this.waiting === 0) this.room = null;
  }
}
