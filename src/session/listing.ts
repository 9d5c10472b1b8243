import type { Dir } from 'node:fs';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { fromErrno } from './errors.js';
import { toFileInfo, type FileInfo } from './file-info.js';
import { procPath } from './jail.js';
import { UPLOAD_TEMP_PREFIX } from './paths.js';

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
 * Entries are described by lstat relative to the pinned directory fd; temp
 * upload files are hidden. The owner must close() it (iteration does).
 */
export class DirectoryListing implements AsyncIterable<FileInfo> {
  private closed = false;
  private names: string[] | null = null;
  private next = 0;

  constructor(
    private readonly dirFile: FileHandle,
    private readonly dir: Dir,
    /** A symlink's text (as on disk) -> what the user may see of it (null: nothing); may throw on text that is no clean path. */
    private readonly linkTarget: (text: string) => string | null,
  ) {}

  /** Up to `max` entries; an empty array at the end. */
  async read(max = 100): Promise<FileInfo[]> {
    this.names ??= await this.readNames();
    const out: FileInfo[] = [];
    while (out.length < max && this.next < this.names.length && !this.closed) {
      const name = this.names[this.next++] as string;
      try {
        out.push(await this.describe(name));
      } catch {
        // removed while we listed: not an entry any more
      }
    }
    return out;
  }

  private async readNames(): Promise<string[]> {
    const names: string[] = [];
    try {
      for (let entry = await this.dir.read(); entry !== null && !this.closed; entry = await this.dir.read()) {
        if (!entry.name.startsWith(UPLOAD_TEMP_PREFIX)) names.push(entry.name);
      }
    } catch (err) {
      throw fromErrno(err);
    }
    return sortByBytes(names);
  }

  private async describe(name: string): Promise<FileInfo> {
    const path = procPath(this.dirFile.fd, name);
    const info = toFileInfo(name, await fsp.lstat(path));
    if (info.type !== 'symlink') return info;
    const target = await fsp.readlink(path).then(this.linkTarget, () => null).catch(() => null);
    return target === null ? info : { ...info, target };
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
