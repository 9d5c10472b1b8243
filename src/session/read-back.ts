import { setMaxListeners } from 'node:events';
import type { TransferResult } from '../audit/events.js';
import { SluiceError } from './errors.js';
import { PacedReads } from './paced-reads.js';
import type { RateLimit } from './rate-limit.js';
import { SequenceHash } from './sequence-hash.js';
import type { OpenFile } from './storage/storage.js';
import type { TransferRecord } from './transfer-record.js';

/** What an upload opened for reading as well (SFTP OPEN READ|WRITE) needs for its reads; the session gives it. */
export interface ReadBackOptions {
  /** The session's download limit: the bytes leave the server as a download's do. */
  rate: RateLimit | null;
  /** Hash the bytes read (the audit trail's). */
  hash: boolean;
  /** The first read: from then on the reads are a transfer in flight (SessionDeps.inFlight). */
  started: (at: Date) => void;
  /** Their record, at the upload's end, when any read was asked. */
  report: (record: TransferRecord) => void;
}

/**
 * The reads of an upload's own file through its handle: the staged file of an
 * atomic upload, or the file in place, as the client asks at any offset (sshfs
 * opens every O_RDWR file so: Python's open(f, 'r+').read() got nothing, then
 * wrote over the start of a file it believed empty). What leaves the server
 * is on record as a download of its own, beside the upload's record (see
 * record()): an upload's record says what arrived, and xferlog, hooks and
 * `audit query` read a download's bytes from a download's.
 */
export class ReadBack {
  /** Aborted at the end: a read waiting for the rate's room ends then. */
  private readonly stopping = new AbortController();
  /** The bytes read in file order from 0; null when they were not one pass (re-read, skipped: see SequenceHash). */
  private readonly hash: SequenceHash | null;
  private bytes = 0;
  /** The first read asked; null: none was, and there is no record. */
  private started: Date | null = null;
  private readonly reads: PacedReads;

  constructor(
    file: OpenFile,
    private readonly options: ReadBackOptions,
    private readonly ended: () => boolean,
  ) {
    // Hashed on the event loop, as a download's (see Download's constructor).
    this.hash = options.hash ? new SequenceHash(0, false) : null;
    // Each pipelined READ waiting on the rate listens on it: no leak to warn of.
    setMaxListeners(0, this.stopping.signal);
    this.reads = new PacedReads(file, options.rate, this.stopping.signal, ended, (position, data) => {
      this.bytes += data.length;
      this.hash?.update(position, data);
    });
  }

  readInto(target: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.started === null && !this.ended()) {
      this.started = new Date();
      this.options.started(this.started);
    }
    return this.reads.readInto(target, offset, length, position);
  }

  /** No read starts any more; one waiting for the rate ends, one reading lands first. */
  async end(): Promise<void> {
    if (!this.stopping.signal.aborted) this.stopping.abort(new SluiceError('failure', 'Transfer is closed'));
    await this.reads.settled();
  }

  /**
   * The reads' record, once the upload's end knows where its file is (`path`,
   * `openedAs`: as the upload's record names it) and how big it ended. Its
   * result is the end the handle was given (a CLOSE: ok, as a download's
   * CLOSE), not what the upload made of it: the bytes read left the server
   * whether the file then took its name or not.
   */
  async record(where: { path: string; openedAs?: string }, size: number, result: TransferResult, reason?: string): Promise<void> {
    if (this.started === null) return this.hash?.spoil();
    const sha256 = this.hash ? await this.hash.digest() : null;
    this.options.report({
      direction: 'download',
      ...where,
      bytes: this.bytes,
      size,
      offset: 0,
      started: this.started,
      result,
      ...(reason === undefined ? {} : { reason }),
      sha256,
      convertedLineEndings: false,
    });
  }
}
