import type { DirectoryListing } from '../session/listing.js';
import { SluiceError } from '../session/errors.js';
import { LazyMap } from '../session/lazy-collections.js';
import { isWithin } from '../session/paths.js';
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
  private readonly entries = new LazyMap<string, HandleEntry>();
  /**
   * Per handle, the clean path its file or directory was opened at, or null
   * once a rename sent on this channel may have moved it (see moved()).
   * Strings only: another session's rename is not seen, and need not be, as
   * it is not ordered with this client's requests.
   */
  private readonly paths = new LazyMap<string, string | null>();
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
    this.paths.set(id.toString('hex'), entry.kind === 'file' ? entry.transfer.path : entry.path);
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

  /**
   * The paths the file or directory of `key` (a handle, as hex) is at, for
   * the requests by path ordered with what is done through it: the one it
   * was opened at; null (every path) once it may have moved, and for no
   * handle.
   */
  namesAt(key: string): string[] | null {
    const path = this.paths.get(key);
    return path == null ? null : [path];
  }

  /**
   * A rename of `from` was sent on this channel: a file or directory open
   * at or below it may be elsewhere by now (the session holds an upload's
   * directory, not its name, and commits there). Where, the names do not
   * tell for sure (the rename may fail, others may follow), and following
   * each would let a client grow a list per handle with every rename: such
   * a handle acts on every path from then on, as every CLOSE did before
   * requests were ordered by path.
   */
  moved(from: string): void {
    for (const [key, path] of this.paths) if (path !== null && isWithin(path, from)) this.paths.set(key, null);
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
    this.paths.delete(key);
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
    this.paths.clear();
    for (let i = 0; i < all.length; i++) this.user.release();
    const end = (t: Upload | Download): Promise<void> => (delivered && t.direction === 'download' && t.readToEnd ? t.close() : t.abort(reason));
    // Settled: one that fails must not keep the session's close (its releases, its logout) from running after it.
    const ends = await Promise.allSettled(all.map((e) => (e.kind === 'file' ? end(e.transfer) : e.listing.close())));
    return ends.flatMap((end) => (end.status === 'rejected' ? [end.reason] : []));
  }
}
