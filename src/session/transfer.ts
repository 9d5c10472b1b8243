import { createHash } from 'node:crypto';
import { Transform, Writable, type Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
import { constants as C, promises as fsp } from 'node:fs';
import type { TransferResult } from '../audit/events.js';
import { SluiceError, fromErrno } from './errors.js';
import { toFileInfo, type FileInfo } from './file-info.js';
import { baseName } from './paths.js';
import type { Location } from './jail.js';
import type { QuotaLedger } from './quota.js';
import { SequenceHash } from './sequence-hash.js';

/** What a finished transfer reports to its session for the audit trail. */
export interface TransferRecord {
  direction: 'upload' | 'download';
  path: string;
  bytes: number;
  size: number;
  offset: number;
  started: Date;
  result: TransferResult;
  reason?: string;
  /** The bytes transferred, in file order; null when not computed or not computable. */
  sha256: string | null;
  /** The whole file after a resumed upload, when configured. */
  fileSha256?: string;
  ascii: boolean;
}

/** How the shared layer treats a transfer beyond its bytes. */
export interface TransferOptions {
  /** Compute the SHA-256 of the bytes as they pass (the audit trail's). */
  hash: boolean;
  /** FTP TYPE A: the bytes are converted on the way; recorded only. */
  ascii: boolean;
}

export interface UploadOptions extends TransferOptions {
  /** After a resumed upload, hash the whole file (a second read). */
  hashWholeFile: boolean;
}

type Reporter = (record: TransferRecord) => void;

abstract class Transfer {
  protected readonly started = new Date();
  protected readonly hash: SequenceHash | null;
  protected bytes = 0;
  private finished: Promise<void> | null = null;
  private result: TransferResult | null = null;

  constructor(
    protected readonly file: FileHandle,
    readonly path: string,
    readonly offset: number,
    protected readonly report: Reporter,
    private readonly options: TransferOptions,
  ) {
    this.hash = options.hash ? new SequenceHash(offset) : null;
  }

  get transferred(): number {
    return this.bytes;
  }

  get isFinished(): boolean {
    return this.finished !== null;
  }

  /** How the transfer ended; null while it runs. */
  get outcome(): TransferResult | null {
    return this.result;
  }

  /** fsync@openssh.com: the bytes so far are on disk. */
  async sync(): Promise<void> {
    await this.file.sync().catch((e: unknown) => {
      throw fromErrno(e);
    });
  }

  /** Metadata of the open file (SFTP FSTAT). */
  async info(): Promise<FileInfo> {
    try {
      return toFileInfo(baseName(this.path), await this.file.stat());
    } catch (err) {
      throw fromErrno(err);
    }
  }

  /** Change mode or times through the open descriptor; permission checks are the session's. */
  async changeFile(change: { mode?: number; atime?: Date; mtime?: Date }): Promise<void> {
    try {
      if (change.mode !== undefined) await this.file.chmod(change.mode & 0o777);
      if (change.mtime !== undefined) {
        const st = await this.file.stat();
        await this.file.utimes(change.atime ?? st.atime, change.mtime);
      }
    } catch (err) {
      throw fromErrno(err);
    }
  }

  /** Successful end: everything arrived. */
  close(): Promise<void> {
    return this.finish('ok');
  }

  /** The client or the server stopped the transfer; partial state is cleaned up. */
  abort(reason: string, result: TransferResult = 'aborted'): Promise<void> {
    return this.finish(result, reason);
  }

  private finish(result: TransferResult, reason?: string): Promise<void> {
    this.finished ??= this.settle(result, reason);
    return this.finished;
  }

  protected abstract settle(result: TransferResult, reason?: string): Promise<void>;

  protected record(direction: 'upload' | 'download', size: number, result: TransferResult, reason?: string, fileSha256?: string): void {
    this.result = result;
    this.report({
      direction,
      path: this.path,
      bytes: this.bytes,
      size,
      offset: this.offset,
      started: this.started,
      result,
      ...(reason === undefined ? {} : { reason }),
      sha256: this.hash?.digest() ?? null,
      ...(fileSha256 === undefined ? {} : { fileSha256 }),
      ascii: this.options.ascii,
    });
  }
}

export class Download extends Transfer {
  constructor(file: FileHandle, path: string, offset: number, readonly size: number, report: Reporter, options: TransferOptions) {
    super(file, path, offset, report, options);
  }

  /** Positional read; an empty buffer means end of file. */
  async read(position: number, length: number): Promise<Buffer> {
    if (this.isFinished) throw new SluiceError('failure', 'Transfer is closed');
    const buf = Buffer.allocUnsafe(length);
    const { bytesRead } = await this.file.read(buf, 0, length, position).catch((e: unknown) => {
      throw fromErrno(e);
    });
    const data = bytesRead === length ? buf : buf.subarray(0, bytesRead);
    this.bytes += bytesRead;
    this.hash?.update(position, data);
    return data;
  }

  /** The file from `offset` as a stream with backpressure, counted and hashed. */
  readable(): Readable {
    let position = this.offset;
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        this.bytes += chunk.length;
        this.hash?.update(position, chunk);
        position += chunk.length;
        done(null, chunk);
      },
    });
    const source = this.file.createReadStream({ start: this.offset, autoClose: false, highWaterMark: 256 * 1024 });
    source.on('error', (err) => counter.destroy(fromErrno(err)));
    return source.pipe(counter);
  }

  protected async settle(result: TransferResult, reason?: string): Promise<void> {
    await this.file.close().catch(() => undefined);
    this.record('download', this.size, result, reason);
  }
}

export interface UploadTarget {
  /** Pinned location of the final name. */
  loc: Location;
  /** Size of the file being replaced or appended to; null for a new file. */
  existingSize: number | null;
  /** Name of the temporary file in the same directory when the upload is atomic. */
  tempName: string | null;
  append: boolean;
}

export class Upload extends Transfer {
  private size: number;
  private reserved = 0;
  private quotaHit = false;
  /** What replacing the old file will free, so an overwrite near the quota still fits. */
  private readonly credit: number;

  constructor(
    file: FileHandle,
    path: string,
    offset: number,
    private readonly target: UploadTarget,
    private readonly ledger: QuotaLedger,
    report: Reporter,
    private readonly uploadOptions: UploadOptions,
  ) {
    super(file, path, offset, report, uploadOptions);
    this.size = target.tempName === null ? (target.existingSize ?? 0) : 0;
    this.credit = target.tempName === null ? 0 : (target.existingSize ?? 0);
    if (target.existingSize === null) ledger.holdFile();
  }

  /** Write at `position` (ignored in append mode); resolves once the bytes are in the file. */
  async write(data: Buffer, position: number = this.offset + this.bytes): Promise<void> {
    if (this.isFinished) throw new SluiceError('failure', 'Transfer is closed');
    const at = this.target.append ? this.size : position;
    const growth = Math.max(0, at + data.length - this.size);
    try {
      this.ledger.reserve(growth, this.credit);
    } catch (err) {
      this.quotaHit = true;
      throw err;
    }
    this.reserved += growth;
    this.size += growth;
    // The write starts first and the hash is fed while the thread pool
    // writes, so hashing adds no wait. Hashed in the order the writes are
    // issued: a client writing in file order (all common ones) needs no
    // reordering, however the writes complete. A failed write spoils the hash
    // rather than let it describe bytes the file does not hold.
    const written = this.file.write(data, 0, data.length, this.target.append ? null : at);
    this.hash?.update(at, data);
    try {
      await written;
    } catch (err) {
      this.hash?.spoil();
      throw fromErrno(err);
    }
    this.bytes += data.length;
  }

  /** A sink for a sequential stream (FTP data channel); backpressure is the write itself. */
  writable(): Writable {
    return new Writable({
      highWaterMark: 256 * 1024,
      write: (chunk: Buffer, _enc, done) => {
        this.write(chunk).then(() => done(), done);
      },
      // TLS delivers 16 KiB records: what piles up during one write goes out
      // as one, so the file sees large writes and the thread pool few trips.
      writev: (chunks, done) => {
        this.write(Buffer.concat(chunks.map((c) => c.chunk as Buffer))).then(() => done(), done);
      },
    });
  }

  /** SFTP FSETSTAT size on an open upload: cut or extend, within the quota. */
  async resize(size: number): Promise<void> {
    const growth = Math.max(0, size - this.size);
    this.ledger.reserve(growth, this.credit);
    this.reserved += growth;
    try {
      await this.file.truncate(size);
    } catch (err) {
      throw fromErrno(err);
    }
    this.size = Math.max(this.size, size);
  }

  get exceededQuota(): boolean {
    return this.quotaHit;
  }

  protected async settle(result: TransferResult, reason?: string): Promise<void> {
    const { loc, existingSize, tempName } = this.target;
    let bytesDelta = 0;
    let filesDelta = 0;
    let finalSize = existingSize ?? 0;
    let fileSha256: string | undefined;
    try {
      if (this.quotaHit && tempName === null) {
        // Over quota, in place: give back exactly what this upload added.
        if (existingSize === null) await fsp.unlink(loc.path);
        else await this.file.truncate(existingSize);
        await this.file.close();
      } else {
        const written = (await this.file.stat()).size;
        await this.file.close();
        if (tempName !== null && result !== 'ok') {
          await fsp.unlink(loc.sibling(tempName));
        } else {
          // Atomic: the new file replaces the old one in one rename. In place:
          // a partial file stays, so the client can resume it.
          if (tempName !== null) await fsp.rename(loc.sibling(tempName), loc.path);
          finalSize = written;
          bytesDelta = written - (existingSize ?? 0);
          filesDelta = existingSize === null ? 1 : 0;
          if (result === 'ok' && this.offset > 0 && this.uploadOptions.hashWholeFile) fileSha256 = await hashFile(loc).catch(() => undefined);
        }
      }
    } catch (err) {
      result = 'failed';
      reason = `finishing upload: ${fromErrno(err).kind}`;
      await this.file.close().catch(() => undefined);
    } finally {
      if (existingSize === null) this.ledger.releaseFile();
      this.ledger.settle(this.reserved, bytesDelta, filesDelta);
      await loc.close();
    }
    this.record('upload', finalSize, result, reason, fileSha256);
  }
}

/** A second, streaming read of the finished file: only for resumed uploads, only when configured. */
async function hashFile(loc: Location): Promise<string> {
  const file = await loc.open(C.O_RDONLY | C.O_NONBLOCK);
  const hash = createHash('sha256');
  for await (const chunk of file.createReadStream({ highWaterMark: 256 * 1024 })) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
