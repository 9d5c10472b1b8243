import type { FileHandle } from 'node:fs/promises';

/** One write to the file at most: 1 MiB, in at most 64 pieces. */
const MAX_BATCH_BYTES = 1024 * 1024;
const MAX_BATCH_PIECES = 64;

interface Pending {
  data: Buffer;
  /** null: at the end of a file opened for appending. */
  position: number | null;
  resolve(): void;
  reject(err: unknown): void;
}

/**
 * Writes to one file, one at a time. What arrives while a write runs goes out
 * with the next one as a single writev when it continues where the one before
 * ends. An SFTP client sends 32 KiB per request; written one by one, every
 * request is a trip through the thread pool, which on the bench machine cost
 * more of the event loop than anything else on the upload path.
 */
export class WriteQueue {
  private queue: Pending[] = [];
  private busy = false;

  constructor(private readonly file: FileHandle) {}

  /** Resolves once `data` is in the file; rejects with the write's error. */
  write(data: Buffer, position: number | null): Promise<void> {
    return new Promise((resolve, reject) => {
      this.queue.push({ data, position, resolve, reject });
      if (!this.busy) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.busy = true;
    while (this.queue.length > 0) {
      const run = this.takeRun();
      try {
        await writeAll(this.file, run.map((p) => p.data), (run[0] as Pending).position);
        for (const p of run) p.resolve();
      } catch (err) {
        for (const p of run) p.reject(err);
      }
    }
    this.busy = false;
  }

  /** The oldest pending write and those that continue it, within the batch limits. */
  private takeRun(): Pending[] {
    const first = this.queue.shift() as Pending;
    const run = [first];
    let bytes = first.data.length;
    for (let next = this.queue[0]; next && run.length < MAX_BATCH_PIECES && bytes + next.data.length <= MAX_BATCH_BYTES; next = this.queue[0]) {
      const continues = first.position === null ? next.position === null : next.position === first.position + bytes;
      if (!continues) break;
      run.push(this.queue.shift() as Pending);
      bytes += next.data.length;
    }
    return run;
  }
}

/** writev until every byte is written: a short write is retried with the rest, so a full disk reports its error. */
async function writeAll(file: FileHandle, all: Buffer[], position: number | null): Promise<void> {
  const pieces = all.filter((p) => p.length > 0);
  let at = position;
  while (pieces.length > 0) {
    const { bytesWritten } = await file.writev(pieces, at ?? undefined);
    if (bytesWritten === 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    if (at !== null) at += bytesWritten;
    let skip = bytesWritten;
    while (pieces.length > 0 && skip >= (pieces[0] as Buffer).length) skip -= (pieces.shift() as Buffer).length;
    if (skip > 0) pieces[0] = (pieces[0] as Buffer).subarray(skip);
  }
}
