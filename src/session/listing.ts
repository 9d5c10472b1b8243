import { toFileInfo, type FileInfo } from './file-info.js';
import type { DirectoryReader } from './storage/storage.js';

/**
 * An open directory, read in batches (SFTP READDIR) or iterated (FTP LIST).
 * Entries are described as they are read, never following a symlink. The
 * owner must close() it (iteration does).
 */
export class DirectoryListing implements AsyncIterable<FileInfo> {
  private closed = false;

  constructor(private readonly dir: DirectoryReader) {}

  /** Up to `max` entries; an empty array at the end. */
  async read(max = 100): Promise<FileInfo[]> {
    const out: FileInfo[] = [];
    while (out.length < max && !this.closed) {
      const names = await this.dir.names(max - out.length);
      if (names.length === 0) break;
      for (const name of names) {
        // Removed while we listed: not an entry any more.
        const st = await this.dir.stat(name).catch(() => null);
        if (st) out.push(toFileInfo(name, st));
      }
    }
    return out;
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
