import { Sha256Stream } from './offloaded-sha256.js';

/** Out-of-order bytes held for the hash at most; beyond that the hash is given up. */
const MAX_REORDER_BYTES = 16 * 1024 * 1024;
/**
 * Out-of-order bytes all transfers of this process may hold between them;
 * past it, the transfer whose bytes would not fit gives up its hash. Per
 * transfer alone the bound was no bound: a user opened 256 SFTP handles
 * and read each one's file from its second chunk on, and the process held
 * 16 MiB for each, 4 GiB, none of it counted in the connection's budget
 * (found by a review: 12 handles on one channel grew the process by 200 MiB).
 */
const PROCESS_REORDER_BYTES = 32 * 1024 * 1024;
/**
 * What holding one chunk costs beyond its bytes (its Buffer, the memory of
 * its own it is copied to, its map entry: 300-450 bytes measured on Node 20
 * for a one-byte chunk), counted in both bounds with them. Counting the bytes
 * alone let tiny chunks through: one-byte WRITEs ahead of a gap held some 140
 * times what was counted, about 6 GiB within the process's 32 MiB (found by
 * the review of what clients can grow).
 */
const HELD_OVERHEAD = 512;
/** Out-of-order bytes held by every SequenceHash of this process. */
let heldForOrder = 0;

/**
 * A chunk's copy in memory of its own, never in Node's shared pool (where
 * Buffer.from puts one under 4 KiB): a held copy there keeps its whole 8 KiB
 * slab alive, whatever else shared it. Found by the second review of the
 * count: ssh2 decrypts each packet under 4 KiB into that pool, and one-byte
 * WRITEs ahead of a gap with other requests between them had each held byte
 * keep most of a slab (about 1.9 KiB measured) for the 192 bytes counted.
 */
function heldCopy(data: Buffer): Buffer {
  const copy = Buffer.allocUnsafeSlow(data.length);
  data.copy(copy);
  return copy;
}

/**
 * SHA-256 of the bytes in file order, computed as they pass. Pipelined SFTP
 * reads may complete out of order: early chunks wait (bounded) for the gap to
 * fill. A rewrite, a gap that never fills or too much waiting gives up the
 * hash (null) rather than report a wrong one.
 *
 * The hashing itself runs on a thread of its own past the first 256 KiB
 * (offloaded-sha256.ts) unless asked not to; a transfer that sends faster
 * than that thread hashes waits on caughtUp(). `npm run bench` measures what the hash costs
 * (audit trail on against off).
 */
export class SequenceHash {
  private hash: Sha256Stream | null;
  private readonly waiting = new Map<number, Buffer>();
  /** What the waiting chunks cost, HELD_OVERHEAD each included. */
  private waitingBytes = 0;
  /** Whether any bytes came (hashed or waiting): where they begin is settled then (startAt). */
  private began = false;
  /** `offload`: see Sha256Stream. */
  constructor(
    private next: number,
    offload = true,
  ) {
    this.hash = new Sha256Stream(offload);
  }

  update(position: number, data: Buffer): void {
    if (!this.hash || data.length === 0) return;
    this.began = true;
    if (position < this.next) return this.spoil();
    if (position > this.next) {
      // A second chunk at an offset already waiting rewrites it: kept by its offset, the later one
      // would replace the earlier in the hash while the file still holds the earlier's longer tail.
      // Chunks that overlap at other offsets are left waiting when the gap fills, and give null there.
      if (this.waiting.has(position)) return this.spoil();
      // Refused before the copy: what would not fit is never held.
      const cost = data.length + HELD_OVERHEAD;
      if (this.waitingBytes + cost > MAX_REORDER_BYTES || heldForOrder + cost > PROCESS_REORDER_BYTES) return this.spoil();
      this.waiting.set(position, heldCopy(data));
      this.waitingBytes += cost;
      heldForOrder += cost;
      return;
    }
    this.hash.update(data);
    this.next += data.length;
    for (let more = this.waiting.get(this.next); more; more = this.waiting.get(this.next)) {
      this.waiting.delete(this.next);
      this.waitingBytes -= more.length + HELD_OVERHEAD;
      heldForOrder -= more.length + HELD_OVERHEAD;
      this.hash.update(more);
      this.next += more.length;
    }
  }

  /**
   * The bytes begin at `position` rather than where the transfer opened;
   * ignored once any came. An SFTP download opens with no offset and is read
   * where its client asks: one that starts in the middle (a resume, one of
   * several connections reading a file in parts, as rclone's
   * --multi-thread-streams does) is hashed from there, rather than hold up to
   * MAX_REORDER_BYTES of what it read for a start that never comes, then give
   * the hash up.
   */
  startAt(position: number): void {
    if (!this.began) this.next = position;
  }

  /**
   * A transfer waits on this between its reads or writes: null while the
   * hashing keeps up, else a promise that resolves once it has caught up.
   */
  caughtUp(): Promise<void> | null {
    return this.hash?.caughtUp() ?? null;
  }

  /** Once: the hash is ended, and bytes that still pass afterwards (a stream not yet torn down) are not hashed. */
  digest(): Promise<string | null> {
    const hash = this.hash;
    const whole = hash !== null && this.waiting.size === 0;
    this.hash = null;
    this.spoil();
    if (!whole) hash?.drop();
    return whole ? hash.digest() : Promise.resolve(null);
  }

  /** The bytes hashed are not the bytes transferred after all. */
  spoil(): void {
    this.hash?.drop();
    this.hash = null;
    this.waiting.clear();
    heldForOrder -= this.waitingBytes;
    this.waitingBytes = 0;
  }
}
