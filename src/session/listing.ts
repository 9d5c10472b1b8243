import { toFileInfo, type FileInfo } from './file-info.js';
import type { DirectoryReader } from './storage/storage.js';

/** Names taken from the storage per call while all of a directory's are gathered. */
const NAME_BATCH = 512;

/** Pure: names in the order of their UTF-8 bytes, as vsftpd and `LC_ALL=C ls` sort them. */
export function sortByBytes(names: readonly string[]): string[] {
  return names
    .map((name) => ({ name, bytes: Buffer.from(name) }))
    .sort((a, b) => Buffer.compare(a.bytes, b.bytes))
    .map((e) => e.name);
}

/**
 * An open directory, read in batches (SFTP READDIR) or iterated (FTP LIST),
 * in name order for every protocol. Sorting needs every name before the
 * first entry goes out, so the first read takes all of the directory's names
 * (names only: metadata is read batch by batch) and holds them until close.
 * There is no cap on entries; memory is bounded by the names of one directory
 * times the listings open at once (an FTP connection runs one at a time, SFTP
 * counts them among its handles: sftp.maxHandles, sftp.maxHandlesPerUser).
 * Entries are described as they are read, never following a symlink. The
 * owner must close() it (iteration does).
 */
export class DirectoryListing implements AsyncIterable<FileInfo> {
  private closed = false;
  private names: string[] | null = null;
  private next = 0;

  constructor(
    private readonly dir: DirectoryReader,
    /** A symlink's text (see Location.readlink) -> what the user may see of it (null: nothing); may throw on text that is no clean path. */
    private readonly linkTarget: (text: string | null) => string | null,
  ) {}

  /** Up to `max` entries; an empty array at the end. */
  async read(max = 100): Promise<FileInfo[]> {
    this.names ??= await this.readNames();
    const out: FileInfo[] = [];
    while (out.length < max && this.next < this.names.length && !this.closed) {
      const name = this.names[this.next++] as string;
      // Removed while we listed: not an entry any more.
      const info = await this.describe(name).catch(() => null);
      if (info) out.push(info);
    }
    return out;
  }

  private async readNames(): Promise<string[]> {
    const names: string[] = [];
    for (let batch = await this.dir.names(NAME_BATCH); batch.length > 0 && !this.closed; batch = await this.dir.names(NAME_BATCH)) {
      names.push(...batch);
    }
    return sortByBytes(names);
  }

  private async describe(name: string): Promise<FileInfo | null> {
    const st = await this.dir.stat(name);
    if (st === null) return null;
    const info = toFileInfo(name, st);
    if (info.type !== 'symlink') return info;
    const target = await this.dir.readlink(name).then(this.linkTarget).catch(() => null);
    return target === null ? info : { ...info, target };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
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
