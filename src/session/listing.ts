import type { Dir } from 'node:fs';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fromErrno } from './errors.js';
import { toFileInfo, type FileInfo } from './file-info.js';
import { procPath } from './jail.js';
import { UPLOAD_TEMP_PREFIX } from './paths.js';

/**
 * An open directory, read in batches (SFTP READDIR) or iterated (FTP LIST).
 * Entries are described by lstat relative to the pinned directory fd; temp
 * upload files are hidden. The owner must close() it (iteration does).
 */
export class DirectoryListing implements AsyncIterable<FileInfo> {
  private closed = false;

  constructor(
    private readonly dirFile: FileHandle,
    private readonly dir: Dir,
  ) {}

  /** Up to `max` entries; an empty array at the end. */
  async read(max = 100): Promise<FileInfo[]> {
    const out: FileInfo[] = [];
    while (out.length < max && !this.closed) {
      let entry;
      try {
        entry = await this.dir.read();
      } catch (err) {
        throw fromErrno(err);
      }
      if (entry === null) break;
      if (entry.name.startsWith(UPLOAD_TEMP_PREFIX)) continue;
      try {
        out.push(toFileInfo(entry.name, await fsp.lstat(procPath(this.dirFile.fd, entry.name))));
      } catch {
        // removed while we listed: not an entry any more
      }
    }
    return out;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.dir.close().catch(() => undefined);
    await this.dirFile.close().catch(() => undefined);
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
