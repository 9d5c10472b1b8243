import type { DirectoryListing } from '../session/listing.js';
import { SluiceError } from '../session/errors.js';
import type { UserHandles } from '../session/open-handles.js';
import type { Download, Upload } from '../session/transfer.js';

export type HandleEntry =
  | { kind: 'file'; transfer: Upload | Download }
  | { kind: 'dir'; listing: DirectoryListing; path: string };

/**
 * Opaque handles of one SFTP session: a counter, never reused, capped in
 * number per session and, through `user`, per user across all their
 * sessions. Every lookup checks the kind; close-all runs when the channel ends.
 */
export class HandleTable {
  private readonly entries = new Map<string, HandleEntry>();
  private next = 1;
  /** After closeAll: an OPEN that finishes later gets no handle (its caller aborts what it opened). */
  private closed = false;

  constructor(
    private readonly max: number,
    private readonly user: UserHandles,
  ) {}

  /** After closeAll: the channel is gone. */
  get isClosed(): boolean {
    return this.closed;
  }

  add(entry: HandleEntry): Buffer {
    if (this.closed) throw new SluiceError('failure', 'Channel closed');
    if (this.entries.size >= this.max) throw new SluiceError('failure', 'Too many open handles');
    this.user.hold();
    const id = Buffer.alloc(4);
    id.writeUInt32BE(this.next++);
    this.entries.set(id.toString('hex'), entry);
    return id;
  }

  file(handle: Buffer): Upload | Download {
    const e = this.entries.get(handle.toString('hex'));
    if (e?.kind !== 'file') throw new SluiceError('failure', 'Invalid handle');
    return e.transfer;
  }

  /** Whether `key` (a handle, as hex) names an open file. */
  holdsFile(key: string): boolean {
    return this.fileAt(key) !== null;
  }

  /** The open file `key` (a handle, as hex) names, if it names one. */
  fileAt(key: string): Upload | Download | null {
    const e = this.entries.get(key);
    return e?.kind === 'file' ? e.transfer : null;
  }

  dir(handle: Buffer): { listing: DirectoryListing; path: string } {
    const e = this.entries.get(handle.toString('hex'));
    if (e?.kind !== 'dir') throw new SluiceError('failure', 'Invalid handle');
    return e;
  }

  /** Remove and return; the caller closes it. */
  take(handle: Buffer): HandleEntry {
    const key = handle.toString('hex');
    const e = this.entries.get(key);
    if (!e) throw new SluiceError('failure', 'Invalid handle');
    this.entries.delete(key);
    this.user.release();
    return e;
  }

  /**
   * Channel gone: abort unfinished transfers (recorded as such), close
   * listings. A download its client read to the end, every reply of the
   * channel taken by the transport (`delivered`), ended as it would at its
   * CLOSE: lftp drops its connections without closing their last handles,
   * and such downloads, whole at the client, were recorded aborted.
   * Returns what failed (a bug), for the channel to log: settled, so that
   * one failure stops no other end.
   */
  async closeAll(reason: string, delivered: boolean): Promise<unknown[]> {
    this.closed = true;
    const all = [...this.entries.values()];
    this.entries.clear();
    for (let i = 0; i < all.length; i++) this.user.release();
    const end = (t: Upload | Download): Promise<void> => (delivered && t.direction === 'download' && t.readToEnd ? t.close() : t.abort(reason));
    // Settled: one that fails must not keep the session's close (its releases, its logout) from running after it.
    const ends = await Promise.allSettled(all.map((e) => (e.kind === 'file' ? end(e.transfer) : e.listing.close())));
    return ends.flatMap((end) => (end.status === 'rejected' ? [end.reason] : []));
  }
}
