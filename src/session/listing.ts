import { movedMeanwhile, sessionClosed } from './errors.js';
import { baseName, isClientName } from './paths.js';
import { linkInfo, toFileInfo, type FileInfo } from './file-info.js';
import type { DirectoryReader, StorageSpace } from './storage/storage.js';

/** Names taken from the storage per call while a directory's are gathered. */
const NAME_BATCH = 512;
/** Names one listing gathers and sorts at most; past them it goes on in sorted runs of NAME_BATCH. */
const MAX_SORTED = 20_000;
/**
 * Bytes of names (an estimate of their heap) all open listings of this
 * process may hold for sorting. Past it a listing sorts one batch at a time:
 * a user who opened 256 listings of a directory of 80,000 long names held
 * 28 MiB each, until the heap ran out and the process died (found by a
 * review).
 */
const SORT_BUDGET = 64 * 1024 * 1024;
/** What a held name costs beyond its characters. */
const NAME_OVERHEAD = 64;

/**
 * Pure: names in the order of their UTF-8 bytes, as vsftpd and `LC_ALL=C ls`
 * sort them. That is code point order, which UTF-16 order (the default sort,
 * several times faster than comparing encoded bytes) matches except that it
 * puts U+E000-U+FFFF after the surrogates of the code points above them.
 */
export function sortByBytes(names: readonly string[]): string[] {
  return names.some((n) => WIDE.test(n)) ? [...names].sort(byCodePoint) : [...names].sort();
}

const WIDE = /[\ud800-\uffff]/;

function byCodePoint(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      // Surrogates (code points past U+FFFF) go after U+E000-U+FFFF.
      x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
      y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
    }
    return x - y;
  }
  return a.length - b.length;
}

/** Bytes of names the open listings of this process hold for sorting. */
let sortHeld = 0;

/**
 * An open directory, read in batches (SFTP READDIR) or iterated (FTP LIST),
 * in name order for every protocol. Sorting needs the names before the first
 * entry goes out, so the first read gathers them (names only: metadata is
 * read batch by batch), up to MAX_SORTED names and within the process's
 * SORT_BUDGET; a larger directory, or one listed while others hold the
 * budget, goes on in sorted runs of NAME_BATCH names. Every entry comes
 * once either way, and memory is bounded by the budget plus a batch per
 * open listing. Entries are described as they are read, never following a
 * symlink. The owner must close() it (iteration does).
 *
 * A listing lives as long as its client keeps it (an SFTP handle, an FTP
 * transfer a slow client drains), and its directory may be moved meanwhile,
 * into a place whose rights refuse `list` (found by a review: an SFTP
 * READDIR after the directory was moved into a drop box described a file
 * moved in there after it). So before each batch goes out, once its names
 * are read and described, the directory is looked at where it is now, and
 * the batch is refused unless that is `path`, where the rights were checked:
 * a directory never moves to wider rights, so one in place then had at least
 * those rights at each read (see Session's inPlace). One readlink a batch.
 */
export class DirectoryListing implements AsyncIterable<FileInfo> {
  private closed = false;
  private started = false;
  /** The directory has no more names to give. */
  private drained = false;
  private names: string[] = [];
  private next = 0;
  /** This listing's share of sortHeld. */
  private held = 0;
  /** The read under way: the next waits for it (see read). */
  private reading: Promise<unknown> = Promise.resolve();
  /** The directory was read since its place was last looked at. */
  private unchecked = false;

  constructor(
    private readonly dir: DirectoryReader,
    /** A symlink's text (see Location.readlink) -> what the user may see of it (null: nothing); may throw on text that is no clean path. */
    private readonly linkTarget: (text: string | null) => string | null,
    /** The directory's virtual path, where its rights were checked: it is read or changed only while it is there. */
    readonly path: string,
    /** Told once, at the close (the session keeps its open listings, to close them at its end). */
    private readonly onClose: () => void = () => undefined,
  ) {}

  /**
   * Up to `max` entries; an empty array at the end. Reads run one after
   * another: two at once (SFTP READDIRs a client sent together on one
   * handle) would have the second take names while the first still gathered
   * and sorted its run, giving names twice, out of order or not at all.
   */
  read(max = 100): Promise<FileInfo[]> {
    const mine = this.reading.then(() => this.readNow(max));
    this.reading = mine.catch(() => undefined);
    return mine;
  }

  private async readNow(max: number): Promise<FileInfo[]> {
    if (!this.started) {
      this.started = true;
      await this.gather();
    }
    const out: FileInfo[] = [];
    while (out.length < max && !this.closed) {
      if (this.next >= this.names.length) {
        if (this.drained) break;
        await this.gatherRun();
        continue;
      }
      const name = this.names[this.next++] as string;
      this.unchecked = true;
      // Removed while we listed: not an entry any more.
      const info = await this.describe(name).catch(() => null);
      if (info) out.push(info);
    }
    // Closed meanwhile: what was read goes nowhere (its reader is closed, so its place unknown).
    if (this.closed) return [];
    if (this.unchecked) {
      if ((await this.dir.whereNow()) !== this.path) throw movedMeanwhile();
      this.unchecked = false;
    }
    return out;
  }

  /** The first run: as many names as MAX_SORTED and the budget allow, sorted. */
  private async gather(): Promise<void> {
    const names: string[] = [];
    while (!this.closed && !this.drained && names.length < MAX_SORTED) {
      const batch = await this.take();
      // Closed while the batch was read: close() has given back the charge already, take no more.
      if (this.closed) break;
      names.push(...batch);
      const bytes = batch.reduce((sum, n) => sum + n.length + NAME_OVERHEAD, 0);
      this.held += bytes;
      sortHeld += bytes;
      if (sortHeld > SORT_BUDGET) break;
    }
    this.names = sortByBytes(names);
  }

  /** A later run: the next batch, sorted; what the runs before held is given back. */
  private async gatherRun(): Promise<void> {
    this.release();
    this.names = sortByBytes(await this.take());
    this.next = 0;
  }

  private async take(): Promise<string[]> {
    if (!this.closed) this.unchecked = true;
    const batch = this.closed ? [] : await this.dir.names(NAME_BATCH);
    if (batch.length === 0) this.drained = true;
    // Names no client may give (paths.ts isClientName) were made on the host: not listed, by any protocol.
    // They could not be reached, and their ESC, C1 or bidi controls went to the clients' terminals as they
    // were, in LIST and STAT replies and SFTP READDIR (found by a review); a backslash's led elsewhere.
    return batch.filter(isClientName);
  }

  private release(): void {
    sortHeld -= this.held;
    this.held = 0;
  }

  private async describe(name: string): Promise<FileInfo | null> {
    const st = await this.dir.stat(name);
    if (st === null) return null;
    const info = toFileInfo(name, st);
    if (info.type !== 'symlink') return info;
    const target = await this.dir.readlink(name).then(this.linkTarget).catch(() => null);
    return linkInfo(info, target);
  }

  /**
   * Change the directory itself (SFTP FSETSTAT on its handle) through the
   * descriptor it is read from, never by its path: a symlink put in its
   * place had the symlink's target changed (found by the paths review).
   * As a read, only while it is where its rights were checked.
   */
  change(act: (dir: DirectoryReader) => Promise<void>): Promise<void> {
    return this.inPlace(act);
  }

  /**
   * The directory itself (SFTP FSTAT on its handle), by the same
   * descriptor: by its path, a directory moved away and replaced described
   * what now had its name.
   */
  info(): Promise<FileInfo> {
    return this.inPlace(async (dir) => toFileInfo(this.path === '/' ? '/' : baseName(this.path), await dir.info()));
  }

  /** Room on the storage the directory lies on (SFTP fstatvfs on its handle), by the same descriptor, as info(). */
  space(): Promise<StorageSpace> {
    return this.inPlace((dir) => dir.space());
  }

  private async inPlace<T>(act: (dir: DirectoryReader) => Promise<T>): Promise<T> {
    // Closed with its session (a CLOSE takes the handle first): its descriptor is no longer its own.
    if (this.closed) throw sessionClosed();
    if ((await this.dir.whereNow()) !== this.path) throw movedMeanwhile();
    return await act(this.dir);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.names = [];
    this.release();
    this.onClose();
    await this.dir.close();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<FileInfo> {
    try {
      for (;;) {
        const batch = await this.read();
        if (batch.length === 0) return;
        yield* batch;
      }
    } finally {
      await this.close();
    }
  }
}
