import { SluiceError } from './errors.js';
import type { RateLimit } from './rate-limit.js';
import type { OpenFile } from './storage/storage.js';

/**
 * A client's positional reads of an open file (SFTP READ): a download's, and
 * those of an upload opened for reading too (see ReadBack). Each is paced by
 * the session's download limit, counted where its transfer says, and tracked,
 * so that the transfer's end waits for the reads under way.
 */
export class PacedReads {
  /**
   * Reads still running: the end waits for them, so that the record counts and hashes every byte
   * a client got. Before (found by a review), an SFTP CLOSE sent right behind a READ (READs are not
   * ordered on their handle) recorded the download before the READ landed: `bytes: 0` and the SHA-256
   * of nothing in the audit trail, while the client got the whole file.
   */
  private readonly running = new Set<Promise<number>>();

  constructor(
    private readonly file: OpenFile,
    private readonly rate: RateLimit | null,
    /** Aborted as the transfer ends: a read waiting for the rate's room ends then, not when its debt is paid. */
    private readonly stopping: AbortSignal | undefined,
    /** Whether the transfer has ended (or is ending): no read starts then. */
    private readonly ended: () => boolean,
    /** The bytes read at a position, once in the buffer. */
    private readonly counted: (position: number, data: Buffer) => void,
  ) {}

  /**
   * Into `target` at `offset`, up to `length` bytes at `position` (SFTP reads
   * straight into its DATA reply): the bytes read, 0 at the end. Under a limit,
   * a short read of at most the bucket's burst, as SFTP allows (clients ask
   * again for the rest): one 255 KiB READ charged whole sent nothing for half
   * a minute at 8 KiB/s.
   */
  readInto(target: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.ended()) return Promise.reject(new SluiceError('failure', 'Transfer is closed'));
    const read = this.readNow(target, offset, length, position);
    this.running.add(read);
    const done = () => void this.running.delete(read);
    read.then(done, done);
    return read;
  }

  private async readNow(target: Buffer, offset: number, length: number, position: number): Promise<number> {
    const { rate } = this;
    const granted = rate && length > 0 ? await rate.next(length, this.stopping) : length;
    if (rate && this.ended()) {
      rate.refund(granted);
      throw new SluiceError('failure', 'Transfer is closed');
    }
    const n = await this.file.read(target, offset, granted, position);
    // Past the end (clients ask beyond it, in parallel): what was not sent is not charged.
    if (rate && n < granted) rate.refund(granted - n);
    this.counted(position, target.subarray(offset, offset + n));
    return n;
  }

  /** Resolves once every read under way has landed or failed. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.running]);
  }
}
