import { setMaxListeners } from 'node:events';
import { Transform, Writable, type Readable } from 'node:stream';
import type { Replaced, TransferResult } from '../audit/events.js';
import { SluiceError, Unseen, notOpenForReading, notOpenForWriting, sizeNotWritable, toSluiceError } from './errors.js';
import { toFileInfo, type FileInfo } from './file-info.js';
import { baseName, parentOf } from './paths.js';
import { dropFile, dropThrough, freedBytes, freeingKey, lookingAgain, NameChanged, outsideInPlaceWrites, type Ledger } from './quota.js';
import { pieces, type RateLimit } from './rate-limit.js';
import { SequenceHash } from './sequence-hash.js';
import { PacedReads } from './paced-reads.js';
import { ReadBack, type ReadBackOptions } from './read-back.js';
import { Sha256Stream } from './offloaded-sha256.js';
import { hashRange, unchangedSince, type Checksum, type ChecksumRange, type HashAlgorithm, type Pace } from './checksum.js';
import { replacedThrough } from './replaced.js';
import type { TransferRecord } from './transfer-record.js';
import { inPlaceFence } from './fence.js';
import { verdictWithin, type UploadScanning } from './scanning.js';
import { nodeKey, type HeldNode, type Location, type NodeStat, type OpenFile, type StagedFile, type StorageSpace } from './storage/storage.js';

/**
 * Smallest upload whose hash is kept for HASH and check-file (UploadReceipts):
 * keeping one costs a look at the file after its rename, one more wait for
 * every upload, where reading a smaller file again when asked costs little.
 */
const RECEIPT_MIN_BYTES = 1024 * 1024;

/**
 * The virtual path of `loc`'s name when its directory, `dirNow` now, was
 * moved since the open; null when it was not, or is gone (a removed
 * directory's magic link reads its last path and " (deleted)"). Joined, not
 * checked as a client's path is: a directory moved deeper may leave the file
 * at a path longer than a client may type, and the record still names it.
 * (Checked, such a move made the upload's end throw after its commit: no
 * record, and the process died of the rejection. Found by a review.)
 */
function movedTo(loc: Location, dirNow: string | null | undefined): string | null {
  if (dirNow == null || dirNow.endsWith(' (deleted)') || dirNow === parentOf(loc.virtualPath)) return null;
  return (dirNow === '/' ? '' : dirNow) + '/' + loc.name;
}

/**
 * The staged file `st` as its name now shows it, after its rename; undefined
 * if the name holds another file already, or the file changed since it was
 * measured (see unchangedSince).
 */
async function receiptNode(loc: Location, st: NodeStat): Promise<TransferRecord['node']> {
  const now = await loc.stat().catch(() => null);
  return now !== null && unchangedSince(st, now) ? { key: nodeKey(now), ctimeMs: now.ctimeMs } : undefined;
}

/** How the shared layer treats a transfer beyond its bytes. */
export interface TransferOptions {
  /** Compute the SHA-256 of the bytes as they pass (the audit trail's). */
  hash: boolean;
  /** The front-end converts line endings on the way (FTP TYPE A); recorded only. */
  convertedLineEndings: boolean;
  /** The session's bandwidth limit in this transfer's direction; null: none. */
  rate: RateLimit | null;
}

export interface UploadOptions extends TransferOptions {
  /** After a resumed upload, hash the whole file (a second read). */
  hashWholeFile: boolean;
  /** Scan the complete upload before it takes its name; null: not scanned. */
  /** `turns`: whose turns at the scanner the upload waits in (ScanTurns). */
  scan: { scanning: UploadScanning; user: string; userId: number; turns: string } | null;
  /** The SHA-256 the server already holds for a file as `st` describes it (a receipt); null: none, and it is never read for one. */
  knownSha256: (st: NodeStat) => string | null;
  /** The client opened the file for reading too (see WriteOptions.read), whether or not it may read it. */
  reads: boolean;
  /** Its reads, where it opened the file for reading and may read it; null: no read is served. */
  readBack: ReadBackOptions | null;
  /** false: opened only to empty or create the file (see WriteOptions.write): its writes and resizes are refused. */
  writes: boolean;
}

type Reporter = (record: TransferRecord) => void;

/** The bytes of a write: one buffer, or consecutive ones. */
function byteLength(data: Buffer | readonly Buffer[]): number {
  if (Buffer.isBuffer(data)) return data.length;
  let length = 0;
  for (const chunk of data) length += chunk.length;
  return length;
}

/**
 * Bytes of a sequential upload gathered into one file write (see Upload.writable), and what the
 * stream holds ahead while one is written. Each batch is a trip to the thread pool (a pool thread
 * woken, then the event loop) and, with workers, a quota reservation at the primary: at 256 KiB a
 * large plain-FTP upload made twice the system calls and context switches per MiB, and cost the
 * server a fifth more CPU per MiB. Memory: about two batches per upload, whatever the file or client.
 */
const UPLOAD_BATCH = 1024 * 1024;
/** How long the first bytes of a batch wait for the rest at most (see Upload.writable). */
const UPLOAD_LINGER_MS = 20;

/** Why an upload's finishing steps were cut short: it was aborted (see Upload.abort). */
class UploadStopped extends Error {
  constructor(
    readonly reason: string,
    readonly result: TransferResult,
  ) {
    super(`upload aborted: ${reason}`);
    this.name = 'UploadStopped';
  }
}

abstract class Transfer {
  abstract readonly direction: 'upload' | 'download';
  readonly started = new Date();
  protected readonly hash: SequenceHash | null;
  protected bytes = 0;
  /** Aborted by abort(): a limited request's wait for the bucket ends then, not when its debt is paid. Null: no limit. */
  protected readonly stopping: AbortController | null;
  private finished: Promise<void> | null = null;
  /** The last request a front-end took to run through the transfer (see took). */
  private lastTaken: Promise<unknown> | null = null;
  private result: TransferResult | null = null;

  constructor(
    protected readonly file: OpenFile,
    readonly path: string,
    readonly offset: number,
    protected readonly report: Reporter,
    protected readonly options: TransferOptions,
    /** Whether the SHA-256 runs on the hashing thread (offloaded-sha256.ts) or on the event loop. */
    offloadHash: boolean,
  ) {
    this.hash = options.hash ? new SequenceHash(offset, offloadHash) : null;
    this.stopping = options.rate ? new AbortController() : null;
    // Each pipelined SFTP READ waiting on the rate listens on it (OpenSSH's sftp keeps 64 in flight): no leak to warn of.
    if (this.stopping) setMaxListeners(0, this.stopping.signal);
  }

  /** Where the client's first positional READ or WRITE of some bytes went (see at()); null before one. */
  private firstAt: number | null = null;
  /** The lowest position bytes were read or written at (see moved()). */
  private lowestAt = Infinity;

  /**
   * A positional read or write (SFTP READ, WRITE) of `length` bytes at
   * `position`, as asked. The first says where the transfer begins
   * (SequenceHash.startAt): an SFTP OPEN carries no offset, and a client
   * resuming, or moving its part of a file beside other connections, starts
   * in the middle. Its record gave offset 0 and no hash for bytes that were
   * one pass from there: rclone's --multi-thread-streams (every part but the
   * first), and lftp's `reput` over SFTP, which writes the rest at its offset
   * through a handle opened without APPEND. One of no bytes says nothing of
   * where they begin: an empty WRITE or READ at 0 after the bytes from 32 KiB
   * on recorded offset 0 beside their hash (found by a review).
   */
  protected at(position: number, length: number): void {
    if (length === 0 || this.firstAt !== null) return;
    this.firstAt = position;
    this.hash?.startAt(position);
  }

  /**
   * `length` bytes read or written at `position`. Taken where they moved, not
   * where they were asked for: a READ past the end of a file cut meanwhile
   * moves none, and took the record's offset below the bytes hashed too.
   */
  protected moved(position: number, length: number): void {
    if (length > 0 && position < this.lowestAt) this.lowestAt = position;
  }

  /** Where the bytes transferred begin, the record's offset: the lowest position they moved at, else where they were asked for. */
  protected get from(): number {
    return this.lowestAt !== Infinity ? this.lowestAt : (this.firstAt ?? this.offset);
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
  sync(): Promise<void> {
    return this.file.sync();
  }

  /** Metadata of the open file (SFTP FSTAT). */
  async info(): Promise<FileInfo> {
    return toFileInfo(baseName(this.path), await this.file.stat());
  }

  /** Room on the storage the open file lies on (SFTP fstatvfs), by its descriptor, as info(). */
  space(): Promise<StorageSpace> {
    return this.file.space();
  }

  /** Change mode or times through the open descriptor; permission checks are the session's. */
  async changeFile(change: { mode?: number; atime?: Date; mtime?: Date }): Promise<void> {
    if (change.mode !== undefined) await this.file.chmod(change.mode & 0o777);
    if (change.mtime !== undefined) await this.file.setTimes(change.mtime, change.atime);
  }

  /** Successful end: everything arrived. */
  close(): Promise<void> {
    return this.finish('ok');
  }

  /** The client or the server stopped the transfer; partial state is cleaned up. */
  abort(reason: string, result: TransferResult = 'aborted'): Promise<void> {
    if (this.stopping?.signal.aborted === false) this.stopping.abort(new SluiceError('failure', 'Transfer is closed'));
    return this.finish(result, reason);
  }

  /**
   * A front-end took a request to run through this transfer after the ones it took before (an SFTP WRITE
   * through its handle), which `done` settles once run: a request by name that acts on the transfer comes
   * after it (see takenSoFar).
   */
  took(done: Promise<unknown>): void {
    this.lastTaken = done;
  }

  /**
   * Settles once the requests taken through the transfer so far (see took) have run, however they went:
   * a request by name acting on this session's own upload (Session.namedOrStaged) sees and changes the
   * file as they left it, as on a server running one request at a time.
   */
  takenSoFar(): Promise<void> {
    return settledOf(this.lastTaken);
  }

  /** Settles once its end, begun by close() or abort(), is done, however it went. */
  ended(): Promise<void> {
    return settledOf(this.finished);
  }

  private finish(result: TransferResult, reason?: string): Promise<void> {
    this.finished ??= this.settle(result, reason);
    return this.finished;
  }

  protected abstract settle(result: TransferResult, reason?: string): Promise<void>;

  /**
   * Up to `length` bytes of the file at `position` into `target` at `offset` (SFTP READ), paced by
   * the session's download limit: the bytes read, 0 at the end. A download's, or an upload's opened
   * for reading too; any other refuses.
   */
  abstract readInto(target: Buffer, offset: number, length: number, position: number): Promise<number>;

  protected async record(
    size: number,
    result: TransferResult,
    reason?: string,
    fileSha256?: string,
    node?: TransferRecord['node'],
    quarantined?: TransferRecord['quarantined'],
    replaced?: Pick<TransferRecord, 'replaced' | 'was' | 'scan'>,
    endedAs: string | null = null,
  ): Promise<void> {
    this.result = result;
    // Past its first batch, the hash is the hashing thread's: the record waits for its last bytes.
    const sha256 = this.hash ? await this.hash.digest() : null;
    this.report({
      direction: this.direction,
      path: endedAs ?? this.path,
      ...(endedAs === null ? {} : { openedAs: this.path }),
      bytes: this.bytes,
      size,
      offset: this.from,
      started: this.started,
      result,
      ...(reason === undefined ? {} : { reason }),
      sha256,
      ...(fileSha256 === undefined ? {} : { fileSha256 }),
      convertedLineEndings: this.options.convertedLineEndings,
      ...(node === undefined ? {} : { node }),
      ...(quarantined === undefined ? {} : { quarantined }),
      ...replaced,
    });
  }

  /** The hash of a range of the open file (SFTP check-file-handle); the session checks the permission. */
  checksum(range: ChecksumRange, pace: Pace, algorithm: HashAlgorithm): Promise<Checksum> {
    if (this.isFinished) return Promise.reject(new SluiceError('failure', 'Transfer is closed'));
    return this.file.stat().then((st) => hashRange(this.file, st.size, range, pace, algorithm));
  }
}

/** What Download.readAhead reads: a small file whole. */
const READ_AHEAD = 256 * 1024;

export class Download extends Transfer {
  readonly direction = 'download';
  /** The first chunk of readable(), read ahead. */
  private ahead: Promise<Buffer> | undefined;
  private readonly reads: PacedReads;
  /** Whether a positional read at or past the size came back empty: the client was told the file ends there (SFTP EOF). */
  private endTold = false;
  /** Bytes readable() ended short of the size at the open: the file shrank while read (another session truncated it). */
  private short = 0;

  constructor(file: OpenFile, path: string, offset: number, readonly size: number, report: Reporter, options: TransferOptions) {
    // Hashed on the event loop: measured with OpenSSH sftp get (quick bench, three pairs of runs
    // on a 2-core VM), the thread's copies and messages cost a download more than they gave:
    // 0.68, 0.65 and 0.99 of OpenSSH's speed against 1.17, 1.14 and 0.98 hashing inline, the
    // loop's CPU per MiB hardly lower. Uploads gain (below).
    super(file, path, offset, report, options, false);
    this.reads = new PacedReads(file, options.rate, this.stopping?.signal, () => this.isFinished, (position, data) => {
      if (data.length === 0 && position >= size) this.endTold = true;
      this.moved(position, data.length);
      this.bytes += data.length;
      this.hash?.update(position, data);
    });
  }

  /**
   * Start reading readable()'s first chunk now, while the front-end readies
   * the way out (FTP: the data connection, 150, the pipeline): a small file
   * then waits for no read after it. A failure is readable()'s to report.
   */
  readAhead(): void {
    const length = Math.min(READ_AHEAD, this.size - this.offset);
    if (this.ahead || length <= 0) return;
    const buf = Buffer.allocUnsafe(length);
    this.ahead = this.file.read(buf, 0, length, this.offset).then((n) => (n === length ? buf : buf.subarray(0, n)));
    this.ahead.catch(() => undefined);
  }

  /** Positional read; an empty buffer means end of file. */
  async read(position: number, length: number): Promise<Buffer> {
    const data = Buffer.allocUnsafe(length);
    const n = await this.readInto(data, 0, length, position);
    return n === length ? data : data.subarray(0, n);
  }

  /** Whether the client read to the file's end: it was answered that nothing follows (see endTold). */
  get readToEnd(): boolean {
    return this.endTold;
  }

  /**
   * How many bytes readable() ended short of the size offered: the file shrank while read. Its stream ends as a
   * whole file's does, so a front-end that would call that complete must ask, and then end it with shrunk().
   */
  get shortBy(): number {
    return this.short;
  }

  /** The end of a download whose file shrank while read (see shortBy): failed, as the client did not get the size it was told. */
  shrunk(): Promise<void> {
    return this.abort('file changed while read', 'failed');
  }

  /** As read(), into `target` at `offset` (SFTP READ): see PacedReads, and at() for where the download begins. */
  readInto(target: Buffer, offset: number, length: number, position: number): Promise<number> {
    this.at(position, length);
    return this.reads.readInto(target, offset, length, position);
  }

  /**
   * The file from `offset` to its size at the open, as a stream with
   * backpressure, counted and hashed. Bytes appended meanwhile are not sent,
   * as vsftpd does: the client gets the file SIZE described, the audit
   * record's `size` is what was offered, and no read is spent finding an end
   * already known. The stream ends with the last byte: a client that closes
   * the data connection as soon as it has them all (curl over TLS) no longer
   * meets a transfer still waiting on that read, which it got 426 for.
   */
  readable(): Readable {
    let position = this.offset;
    const { rate } = this.options;
    const count = (chunk: Buffer): void => {
      this.bytes += chunk.length;
      this.hash?.update(position, chunk);
      position += chunk.length;
    };
    // Ends the wait of a limited chunk's next piece when the stream is destroyed (an abort, the drain).
    const ending = rate ? new AbortController() : null;
    const counter = new Transform({
      transform: (chunk: Buffer, _enc, done) => {
        if (!rate) {
          count(chunk);
          return done(null, chunk);
        }
        // Passed on in pieces of the bucket's burst, each when it may move; the next chunk is read only
        // once this one is all passed on. Charged whole, a 256 KiB read went out at once after half a
        // minute at 8 KiB/s, and a file under the old 64 KiB burst was not slowed at all.
        void (async () => {
          for await (const piece of pieces(rate, chunk, ending?.signal)) {
            count(piece);
            counter.push(piece);
          }
        })().then(() => done(), (err: Error) => done(err));
      },
      flush: (done) => {
        this.short = Math.max(0, this.size - position);
        done();
      },
      destroy: (err, done) => {
        ending?.abort(err ?? new Error('download stream destroyed'));
        // The file's stream under it too: left alone, it read on to fill its buffer for no one.
        source.destroy();
        done(err);
      },
    });
    const source = this.file.readStream(this.offset, this.size, this.ahead);
    this.ahead = undefined;
    source.on('error', (err) => counter.destroy(err));
    return source.pipe(counter);
  }

  protected async settle(result: TransferResult, reason?: string): Promise<void> {
    // A read still waiting for the rate limit's room ends now (it refunds, and reads nothing); one reading lands first.
    if (this.stopping?.signal.aborted === false) this.stopping.abort(new SluiceError('failure', 'Transfer is closed'));
    await this.reads.settled();
    // What a read descriptor's close reports changes nothing, so the end (SFTP CLOSE's answer) does
    // not wait a thread-pool round trip for it: one of the few a small file's download takes.
    this.file.close().catch(() => undefined);
    await this.record(this.size, result, reason);
  }
}

export interface UploadTarget {
  /** Pinned location of the final name. */
  loc: Location;
  /** The staged file of an atomic upload, put in place of the final name at the end; null: in place. */
  staged: StagedFile | null;
  /** Size of the file being appended to or written in place; null for a new file. */
  existingSize: number | null;
  append: boolean;
  /** The upload holds a slot of the file quota for a new name. */
  holdsFile: boolean;
  /**
   * The file an atomic upload replaces, claimed in the ledger (dev:ino) so
   * that its size may count as room while the upload runs; null: no credit.
   */
  claim: { key: string; ino: number; dev: number } | null;
  /** The file (dev:ino) an in-place upload holds the ledger's in-place lock of; null for an atomic upload. */
  lock: string | null;
  /** In place: the fence's epoch read before that lock was taken (InPlaceFence); else the one at construction. */
  fenceEpoch?: number;
  /**
   * An atomic upload may put its file in place of one found under its name
   * at the end: the user has overwrite there, and the client did not ask for
   * a new file only (SFTP EXCL, FTP STOU). Decided at the open with the other
   * permissions, but a name can be taken after it (another client's upload, or
   * the user's own file renamed away for the open and back), so it is the end
   * that applies it.
   */
  mayReplace: boolean;
  /**
   * Whether the user may replace a file where the upload's directory is at
   * the end. It is pinned, so another request may have moved it since the
   * open to a place with narrower rights (a rename may only narrow them), and
   * put there under the upload's name a file that place keeps from being
   * replaced. Asked only when a name is found there.
   */
  mayReplaceWhereNow: () => Promise<boolean>;
  /** The file an in-place upload emptied at its open (its bytes are gone whatever the end); null: none. */
  replacedAtOpen: Replaced | null;
  /** Size at the open of the existing file an in-place upload writes into without emptying it; null: none. */
  was: number | null;
}

export class Upload extends Transfer {
  readonly direction = 'upload';
  private size: number;
  private reserved = 0;
  private quotaHit = false;
  /** The first write that failed: the upload can then only end as failed, never replace anything. */
  private writeError: SluiceError | null = null;
  /** Why close() did not complete the upload (refused at the final rename). */
  private closeError: SluiceError | null = null;
  /** Writes and resizes still running. */
  private readonly changing = new Set<Promise<void>>();
  /**
   * Aborted by abort(), with an UploadStopped: ends the steps that wait on something outside the
   * server, a scan's verdict and a write in place's wait for the node's lease (a late heartbeat), so
   * that an ABOR, a stop's drain or a session's end ends the upload as aborted at once, instead of
   * waiting for the scanner and letting the file in after all, or for up to LEASE_WAIT_MS.
   */
  private readonly finishing = new AbortController();
  /** In place: the fence's epoch it began in (see InPlaceFence); null for an atomic upload. */
  private readonly fenceEpoch: number | null;
  /** The client's reads of the file (see ReadBack); null: not opened for reading. */
  private readonly readBack: ReadBack | null;
  /** Writes into an existing file it did not empty, at the positions asked (a resume): they say where the upload begins (see write()). */
  private readonly resumes: boolean;

  constructor(
    file: OpenFile,
    path: string,
    offset: number,
    private readonly target: UploadTarget,
    private readonly ledger: Ledger,
    report: Reporter,
    private readonly uploadOptions: UploadOptions,
  ) {
    // On the hashing thread: the loop's CPU per MiB of a 1 GiB FTP put fell from 1.5-1.8 to 1.0-1.1 ms.
    super(file, path, offset, report, uploadOptions, true);
    this.size = target.staged === null ? (target.existingSize ?? 0) : 0;
    this.resumes = target.staged === null && !target.append && (target.existingSize ?? 0) > 0;
    this.fenceEpoch = target.lock === null ? null : (target.fenceEpoch ?? inPlaceFence.epoch);
    this.readBack = uploadOptions.readBack && new ReadBack(file, uploadOptions.readBack, () => this.isFinished);
  }

  /** Whether it takes writes (see UploadOptions.writes). */
  get writes(): boolean {
    return this.uploadOptions.writes;
  }

  /** Written to a staged file that takes its name only at the end (an atomic upload). */
  get isStaged(): boolean {
    return this.target.staged !== null;
  }

  /** In place, several nodes: refused once this node can no longer prove it holds the file's lock (synchronous, no round trip). */
  private fenced(): SluiceError | null {
    return this.fenceEpoch === null ? null : inPlaceFence.check(this.fenceEpoch);
  }

  /**
   * Why a read through it is refused; null: it is served (see readInto). Not opened for reading is
   * the client's own flags speaking (read(2)'s EBADF), whatever is there and whatever the user may
   * do; opened so where the user may not download (a drop box), the right is refused, and the same
   * way whatever is there.
   */
  get readRefusal(): SluiceError | null {
    if (!this.uploadOptions.reads) return notOpenForReading();
    return this.readBack === null ? new SluiceError('permission-denied') : null;
  }

  /**
   * The file as it is now, through the handle (SFTP READ on a handle opened READ|WRITE, or without
   * WRITE): what the writes before it left there, never past its end. See readRefusal.
   */
  readInto(target: Buffer, offset: number, length: number, position: number): Promise<number> {
    if (this.readBack === null) return Promise.reject(this.readRefusal);
    return this.readBack.readInto(target, offset, length, position);
  }

  /**
   * A staged file is open for reading too; a file written in place only for writing unless the client
   * opened it for reading (otherwise that would need a read bit its owner may have taken away), so its
   * hash is asked of its name. Said so, rather than the read's EBADF as "Operation failed".
   */
  override checksum(range: ChecksumRange, pace: Pace, algorithm: HashAlgorithm): Promise<Checksum> {
    if (this.target.staged === null && this.readBack === null) return Promise.reject(new SluiceError('unsupported', 'Handle not open for reading: ask for the checksum by name'));
    return super.checksum(range, pace, algorithm);
  }

  /**
   * Write at `position` (ignored in append mode); resolves once the bytes are
   * in the file. Several buffers are consecutive bytes, written in one call.
   */
  write(data: Buffer | readonly Buffer[], position: number = this.offset + this.bytes): Promise<void> {
    // Refused before anything is reserved or hashed: the upload goes on, as a write(2) of EBADF leaves the file.
    if (!this.uploadOptions.writes) return Promise.reject(notOpenForWriting());
    // WRITEs pipelined behind one that failed hear why, as before the failure ended the upload (failWrite).
    if (this.isFinished) return Promise.reject(this.writeError ?? new SluiceError('failure', 'Transfer is closed'));
    // Into an existing file it did not empty (a resume), the first write says where the upload begins. A new or
    // emptied file begins at 0 whatever comes first: WRITEs ahead of a gap wait for it (sequence-hash.ts), and a
    // later one at 0 then spoiled the hash begun at the first. Appended, the open's offset says where.
    if (this.resumes) this.at(position, byteLength(data));
    const { rate } = this.options;
    return this.track(rate ? this.writePaced(rate, data, position) : this.writeNow(data, position));
  }

  /**
   * A limited write (an SFTP WRITE), in pieces of the bucket's burst, each
   * written once it may move: the file grows in steps, and a piece refused
   * by the quota stops the rest. Before each piece's room is reserved: a
   * limited upload does not hold quota it has not sent yet.
   */
  private async writePaced(rate: RateLimit, data: Buffer | readonly Buffer[], position: number): Promise<void> {
    const chunks = Buffer.isBuffer(data) ? [data] : data;
    // An empty WRITE moves no bytes: as without a limit.
    if (chunks.every((c) => c.length === 0)) return this.writeNow(data, position);
    let at = position;
    for (const chunk of chunks) {
      for await (const piece of pieces(rate, chunk, this.stopping?.signal)) {
        await this.writeNow(piece, at);
        at += piece.length;
      }
    }
  }

  /**
   * SFTP pipelines: a CLOSE may arrive while a WRITE or a resize is still
   * running. The end waits for them, or the size measured at the end (what the
   * quota is charged) would miss bytes that land after it.
   */
  private track(op: Promise<void>): Promise<void> {
    this.changing.add(op);
    const done = (): void => void this.changing.delete(op);
    op.then(done, done);
    return op;
  }

  private async writeNow(data: Buffer | readonly Buffer[], position: number): Promise<void> {
    if (this.writeError) throw this.writeError;
    const chunks = Buffer.isBuffer(data) ? [data] : data;
    const length = byteLength(data);
    let at: number;
    try {
      at = await this.reserve(this.target.append ? null : position, length);
    } catch (err) {
      throw this.failWrite(err);
    }
    // Asked right before the write is issued, with nothing awaited in between (a late heartbeat waited for first).
    if (this.fenceEpoch !== null && this.fenced()) await inPlaceFence.wait(this.fenceEpoch, this.finishing.signal);
    const fenced = this.fenced();
    if (fenced) throw this.failWrite(fenced);
    // The write starts first and the hash is fed while the thread pool
    // writes, so hashing adds no wait. Hashed in the order the writes are
    // issued: a client writing in file order (all common ones) needs no
    // reordering, however the writes complete. A failed write spoils the hash
    // rather than let it describe bytes the file does not hold.
    const written = this.file.write(data, this.target.append ? null : at);
    let next = at;
    for (const chunk of chunks) {
      this.hash?.update(next, chunk);
      next += chunk.length;
    }
    try {
      await written;
    } catch (err) {
      this.hash?.spoil();
      throw this.failWrite(err);
    }
    this.bytes += length;
    if (this.resumes) this.moved(at, length);
    await this.hash?.caughtUp();
  }

  /**
   * A sink for a sequential stream (FTP data channel). The stream's chunks
   * (16 KiB TLS records, 64 KiB socket reads) are gathered up to UPLOAD_BATCH
   * and written as one writev: each write costs a trip to the thread pool and,
   * with workers, a quota reservation sent to the primary, so fewer, larger
   * writes spend less CPU per MiB. Bytes wait at most UPLOAD_LINGER_MS to be
   * gathered: a slow or pausing client's bytes still reach the file, and
   * reserve their room in the quota, about when they arrive (a concurrent
   * upload that comes later is the one refused). Backpressure: a full batch
   * is accepted only once it is in the file, and what arrives meanwhile waits
   * in the stream's buffer (one batch more at most). A batch reserves exactly
   * its length, so an upload fits or is refused at the same byte as before.
   *
   * Under a limit, each chunk is taken in pieces of the bucket's burst, each
   * added once it may move, and the stream holds at most one burst ahead of
   * that: the client is held back by TCP or the SSH window, not by a buffer
   * of ours it filled at once, and the file grows in steps.
   */
  writable(): Writable {
    const { rate } = this.options;
    // Ends the wait of a limited chunk's next piece when the stream is destroyed.
    const ending = rate ? new AbortController() : null;
    let batch: Buffer[] = [];
    let gathered = 0;
    let linger: NodeJS.Timeout | null = null;
    // Writes go one after another: each one's position follows from the bytes written before it.
    let writing: Promise<void> = Promise.resolve();
    const flush = (): Promise<void> => {
      if (linger) clearTimeout(linger);
      linger = null;
      const chunks = batch;
      batch = [];
      gathered = 0;
      // Paid already (a limit is charged as the bytes come in, below).
      if (chunks.length > 0) writing = writing.then(() => this.writePaid(chunks));
      return writing;
    };
    const take = (chunks: Buffer[], done: (err?: Error | null) => void): void => {
      for (const chunk of chunks) {
        batch.push(chunk);
        gathered += chunk.length;
      }
      if (gathered >= UPLOAD_BATCH) return void flush().then(() => done(), done);
      // A lingering batch refused (quota, disk full) fails the stream at once: kept for the next chunk, the
      // refusal waited for a client that sent no more, holding its data connection open (one that stopped
      // past the quota within a batch heard nothing until it ended the upload).
      linger ??= setTimeout(() => void flush().catch((err: Error) => sink.destroy(err)), UPLOAD_LINGER_MS).unref();
      done();
    };
    const takePaced = (limit: RateLimit, chunks: Buffer[], done: (err?: Error | null) => void): void =>
      void (async () => {
        for (const chunk of chunks) {
          for await (const piece of pieces(limit, chunk, ending?.signal)) {
            await new Promise<void>((resolve, reject) => take([piece], (err) => (err ? reject(err) : resolve())));
          }
        }
      })().then(() => done(), (err: Error) => done(err));
    const accept = rate ? (chunks: Buffer[], done: (err?: Error | null) => void) => takePaced(rate, chunks, done) : take;
    const sink = new Writable({
      highWaterMark: rate ? Math.min(UPLOAD_BATCH, rate.burst) : UPLOAD_BATCH,
      write: (chunk: Buffer, _enc, done) => accept([chunk], done),
      writev: (chunks, done) => accept(chunks.map((c) => c.chunk as Buffer), done),
      final: (done) => void flush().then(() => done(), done),
      destroy: (err, done) => {
        if (linger) clearTimeout(linger);
        ending?.abort(err ?? new Error('upload stream destroyed'));
        done(err);
      },
    });
    return sink;
  }

  /** As write(), for bytes the limit was charged for already (writable()). */
  private writePaid(data: readonly Buffer[]): Promise<void> {
    if (this.isFinished) return Promise.reject(new SluiceError('failure', 'Transfer is closed'));
    return this.track(this.writeNow(data, this.offset + this.bytes));
  }

  /**
   * Where what the client still sends after the upload was refused goes (a
   * stream front-end cannot stop its client mid-send): dropped, at the
   * upload's rate, so that a refusal is no way around a bandwidth limit.
   */
  leftovers(): Writable {
    const { rate } = this.options;
    return new Writable({
      write: (chunk: Buffer, _enc, done) => (rate ? void rate.take(chunk.length).then(() => done()) : done()),
    });
  }

  /** SFTP FSETSTAT size on an open upload: cut or extend, within the quota. */
  resize(size: number): Promise<void> {
    if (!this.uploadOptions.writes) return Promise.reject(sizeNotWritable());
    if (this.isFinished) return Promise.reject(new SluiceError('failure', 'Transfer is closed'));
    return this.track(this.resizeNow(size));
  }

  private async resizeNow(size: number): Promise<void> {
    // Every byte written or pipelined so far lies below this.size (growTo() moves it before the ledger answers).
    const cut = size < this.size;
    try {
      await this.growTo(size);
    } catch (err) {
      // As for a refused write: the size was taken before the ledger answered, and writes
      // pipelined meanwhile counted on it, so the upload cannot go on within the quota.
      throw this.failWrite(err);
    }
    // A cut takes bytes already hashed out of the file (a write past the cut then leaves a hole the
    // hash never saw): the hash would describe bytes the file does not hold, and answer HASH and
    // check-file from its receipt with them. Given up, as for a rewrite.
    if (cut) this.hash?.spoil();
    if (this.fenceEpoch !== null && this.fenced()) await inPlaceFence.wait(this.fenceEpoch, this.finishing.signal);
    const fenced = this.fenced();
    if (fenced) throw this.failWrite(fenced);
    await this.file.truncate(size);
  }

  get exceededQuota(): boolean {
    return this.quotaHit;
  }

  /**
   * Grow the reservation for `length` bytes at `position` (null: at the end)
   * and say where they go. A write of no bytes reserves nothing wherever it
   * points: it lands nothing, so the file does not grow (pwrite of nothing
   * extends no file), and its offset is no size. Counted as one, an empty
   * SFTP WRITE far past the end of a file written in place held room up to
   * its offset until the handle closed, and the user's other uploads were
   * refused within the quota (found by a review).
   */
  private async reserve(position: number | null, length: number): Promise<number> {
    const at = position ?? this.size;
    if (length > 0) await this.growTo(at + length);
    return at;
  }

  /**
   * Reserve room for the file to reach `end` bytes (a write's last byte, or
   * the size FSETSTAT sets, which does extend the file). Credit for the file
   * an overwrite replaces is asked for only when the growth does not fit
   * without it, and measured then: a target renamed, deleted or hard-linked
   * since the start frees nothing.
   */
  private async growTo(end: number): Promise<void> {
    // Taken before the ledger answers: writes pipelined meanwhile count from
    // this size, so no byte is reserved twice.
    const growth = Math.max(0, end - this.size);
    if (growth === 0) return;
    this.size += growth;
    this.reserved += growth;
    try {
      try {
        await this.ledger.reserve(growth, 0);
      } catch (err) {
        if (!(err instanceof SluiceError && err.kind === 'quota-exceeded') || this.target.claim === null) throw err;
        await this.ledger.reserve(growth, await this.creditNow());
      }
    } catch (err) {
      // The upload can only fail now (failWrite): its size matters no more, its reservation does.
      this.reserved -= growth;
      throw err;
    }
  }

  /** What replacing the target would free now; 0 once it is no longer the claimed, singly linked file. */
  private async creditNow(): Promise<number> {
    const claim = this.target.claim;
    if (claim === null) return 0;
    const st = await this.target.loc.stat().catch(() => null);
    if (st?.type === 'file' && st.nlink === 1 && st.ino === claim.ino && st.dev === claim.dev) return st.size;
    this.ledger.unclaim(claim.key);
    this.target.claim = null;
    return 0;
  }

  /**
   * The upload can only fail now: it ends at once, so that what it holds (its
   * reservation, its staged file, the lock of a file written in place) goes
   * back now, not when the client closes it. rclone (Go's pkg/sftp) never
   * closes a handle whose write failed, and pools the connection with it
   * open: an upload over the quota held the room it had reserved until rclone
   * exited, and every later file of the run was refused over the quota, those
   * that fitted the room left too. Its record said `aborted`, "client
   * finished", where a client that closed got `failed`, "write failed".
   */
  private failWrite(err: unknown): SluiceError {
    const e = toSluiceError(err);
    if (e.kind === 'quota-exceeded') this.quotaHit = true;
    if (this.writeError === null) {
      this.writeError = e;
      // Whoever ends it next (CLOSE, the session's end) gets the same end, and any failure of it.
      this.abort(`write failed: ${e.kind}`, 'failed').catch(() => undefined);
    }
    return e;
  }

  override abort(reason: string, result: TransferResult = 'aborted'): Promise<void> {
    if (!this.finishing.signal.aborted) this.finishing.abort(new UploadStopped(reason, result));
    return super.abort(reason, result);
  }

  /** Successful end, unless a write failed or the bytes cannot land within the quota: then it rejects. */
  override async close(): Promise<void> {
    await super.close();
    const error = this.closeError ?? this.writeError;
    if (error) throw error;
  }

  protected async settle(result: TransferResult, reason?: string): Promise<void> {
    // The end the handle was given, for its reads' record (see ReadBack.record).
    const asked = { result, reason };
    // Reads under way land before the file is closed, as writes do.
    await this.readBack?.end();
    while (this.changing.size > 0) await Promise.allSettled([...this.changing]);
    if (result === 'ok' && this.writeError) {
      result = 'failed';
      reason = `write failed: ${this.writeError.kind}`;
    }
    const { loc, existingSize, staged } = this.target;
    const heldFile = this.target.claim !== null || this.target.lock !== null;
    let bytesDelta = 0;
    let filesDelta = 0;
    let finalSize = existingSize ?? 0;
    let fileSha256: string | undefined;
    let node: TransferRecord['node'];
    let quarantined: TransferRecord['quarantined'];
    /** What the staged file was put in place of (see replace()). */
    let replaced: TransferRecord['replaced'];
    /** Why a scanned upload got no verdict. */
    let unscanned: string | undefined;
    /** What its record says of a scanned upload: no verdict until one came. */
    let scanned: TransferRecord['scan'] = this.uploadOptions.scan ? 'unscanned' : undefined;
    let stagedLeft = staged !== null;
    /** The file the commit replaced, and what it freed (see replace()). */
    let freedOld: Freed | null = null;
    /** Where the file's directory is now (see the close below); none: not looked at. */
    let where: Promise<string | null> | null = null;
    // The final name held for replace(), until replace() takes it.
    let targetLeft: Promise<Target> | null = null;
    try {
      if (this.quotaHit && staged === null) {
        // Over quota, in place: give back exactly what this upload added,
        // through the open file, as the name may have been renamed meanwhile.
        // A new file's name was counted at its create (Session.createInPlace).
        await this.file.truncate(existingSize ?? 0);
        if (existingSize === null && (await this.unlinkIfStillNamed())) filesDelta = -1;
        await this.file.close();
      } else {
        const replacing = staged !== null && result === 'ok';
        const { scan } = this.uploadOptions;
        const scanning = scan && replacing ? scan : null;
        // The final name is held and looked at while the staged file is measured and closed (the
        // storage describes it by its hidden name during the close), one wait for all, unless a scan
        // reads the file first. What the hold describes must be what the rename replaces, so it is
        // taken no earlier than that one wait before the rename: with a scan, after the verdict.
        let target = (targetLeft = replacing && !scanning ? holdTarget(loc) : null);
        const closing = staged !== null && !scanning ? staged.close() : null;
        // Where the file ends, looked at beside the waits there are anyway (here, and again with the hold after a
        // scan's verdict): its directory, pinned, may have been moved since the open, and the record and the hooks
        // must name where the bytes are (found by a review: a rename of the directory mid-upload left the record,
        // and an upload hook's {path}, on a name the user could fill with another file meanwhile).
        where = loc.whereNow();
        const st = await (closing ?? this.file.stat());
        const written = st.size;
        // In place, the file's ctime is final now, but the bytes sent are no receipt for it: a writer the in-place
        // lock does not hold off (a program outside sluice) may have written it meanwhile, and the stream's hash then
        // vouched for bytes the file lacks (found by a review while the lock was each user's: HASH answered the
        // upload's hash of a file a second user had written over during it). Only a hash read from the file itself
        // (a resume's, below) stands for it. A staged file is named by nobody else; its ctime changes with its
        // rename (looked at after it).
        const inPlace = staged === null ? { key: nodeKey(st), ctimeMs: st.ctimeMs } : undefined;
        if (scanning) {
          // Still under its hidden name: nothing can see or fetch it until the verdict. Unscannable fails closed (throws).
          const verdict = await verdictWithin(scanning.scanning, scanning.turns, () => this.file.readStream(0, written), this.finishing.signal).catch((err: unknown) => {
            if (err instanceof UploadStopped) throw err;
            unscanned = err instanceof SluiceError ? (err.detail ?? err.message) : String(err);
            throw err;
          });
          scanned = verdict.clean ? 'clean' : 'infected';
          if (!verdict.clean) {
            // The verdict is recorded first: a keep that fails loses the copy, never the record.
            quarantined = { signature: verdict.signature, size: written, sha256: null, kept: false };
            try {
              const kept = await scanning.scanning.quarantine.keep(() => this.file.readStream(0, written), { user: scanning.user, userId: scanning.userId, path: this.path, size: written });
              quarantined = kept.kept ? { ...quarantined, sha256: kept.sha256, kept: true, file: kept.file } : { ...quarantined, sha256: kept.sha256, why: kept.why };
            } catch (err) {
              const e = err as NodeJS.ErrnoException;
              quarantined = { ...quarantined, why: `keeping it failed: ${e.code ?? e.message}` };
            }
            throw new SluiceError('rejected', `Upload rejected: malware found (${verdict.signature})`);
          }
          target = targetLeft = holdTarget(loc);
          where = loc.whereNow();
        }
        if (!closing) await this.file.close();
        if (staged !== null && target === null) {
          await staged.discard();
          stagedLeft = false;
        } else if (staged !== null && target !== null) {
          targetLeft = null;
          const change = await this.replace(staged, written, nodeKey(st), await target);
          stagedLeft = false;
          freedOld = change.freed;
          replaced = change.replaced;
          if (written >= RECEIPT_MIN_BYTES) node = await receiptNode(loc, st);
          finalSize = written;
        } else {
          // In place: a partial file stays, so the client can resume it. A new file's name was counted at its
          // create (Session.createInPlace).
          finalSize = written;
          bytesDelta = written - (existingSize ?? 0);
        }
        if (result === 'ok' && this.from > 0 && this.uploadOptions.hashWholeFile) {
          fileSha256 = await hashFile(loc, st).catch(() => undefined);
          if (fileSha256 !== undefined) node = inPlace;
        }
      }
    } catch (err) {
      const e = err instanceof UploadStopped ? new SluiceError('failure', 'Transfer is closed') : toSluiceError(err);
      if (e.kind === 'quota-exceeded') this.quotaHit = true;
      if (result === 'ok') this.closeError = e;
      result = 'failed';
      // Aborted while it waited for its verdict: ended as the abort says (the drain's reason), the file never let in.
      if (err instanceof UploadStopped) [result, reason] = [err.result, err.reason];
      else reason = quarantined ? `malware: ${quarantined.signature}` : unscanned ? `not scanned: ${unscanned}` : `finishing upload: ${e.kind}`;
      await this.file.close().catch(() => undefined);
      if (staged !== null && stagedLeft) await staged.discard().catch(() => undefined);
    } finally {
      // A hold replace() did not take (the upload failed first): waited for, so that its open is done before the directory is let go.
      const untaken = await targetLeft?.catch(() => null);
      void untaken?.held?.close().catch(() => undefined);
      if (this.target.holdsFile) this.ledger.releaseFile();
      if (this.target.claim) this.ledger.unclaim(this.target.claim.key);
      // Settled before the lock goes: on several nodes the lock's give waits for this settle (PostgresWriteLocks.give).
      this.ledger.settle(this.reserved, bytesDelta, filesDelta);
      if (this.target.lock) this.ledger.unlockInPlace(this.target.lock);
      if (freedOld) this.ledger.freed(freedOld.key, freedOld.bytes, freedOld.names);
      void loc.close();
    }
    // The releases reach the ledger before the client hears of the end: its next upload of
    // this file, on any process, finds the file unlocked and unclaimed. (A new file held
    // neither: its releases only move counts, and waiting would cost every small file a trip.)
    if (heldFile) await this.ledger.synced().catch(() => undefined);
    const { replacedAtOpen, was } = this.target;
    if (replacedAtOpen) replaced = replacedAtOpen;
    const endedAs = movedTo(loc, await where?.catch(() => null));
    // Before the upload's own: the session's end waits for that one only (see Session.finished).
    await this.readBack?.record(endedAs === null ? { path: this.path } : { path: endedAs, openedAs: this.path }, finalSize, asked.result, asked.reason);
    await this.record(
      finalSize,
      result,
      reason,
      fileSha256,
      node,
      quarantined,
      {
        ...(replaced === undefined ? {} : { replaced }),
        ...(was === null ? {} : { was }),
        ...(scanned === undefined ? {} : { scan: scanned }),
      },
      endedAs,
    );
  }

  /**
   * The commit put the staged file's `written` bytes under the name, a name more: charged at once, under
   * the lock the commit holds, with its slot and reservation let go; what it replaced goes off after (see
   * replace()). Charged after that lock went (a round trip to the primary later, with workers), a removal
   * of the new file could come first, and the usage, which never goes below zero, took off only what was
   * on it: with less on it than the file, the charge after left bytes and a name with nothing on the disk
   * (found by a review).
   */
  private landed(written: number): void {
    if (this.target.holdsFile) this.ledger.releaseFile();
    this.target.holdsFile = false;
    this.ledger.settle(this.reserved, written, 1);
    this.reserved = 0;
  }

  /** The refusal of an upload whose name was taken after its open by a file it may not replace. */
  private nameTaken(): SluiceError {
    // Where the user may not learn which names exist, the one answer that tells nothing more.
    return this.target.loc.blind ? new Unseen(new SluiceError('already-exists')) : new SluiceError('already-exists');
  }

  /**
   * Remove the name this upload created, if it still names this file; false when it was renamed away, or
   * the unlink failed: the name stays, or went with the file (another session moved it between the look and
   * the unlink), and is counted. Found by a review: that unlink's failure ended the upload without counting
   * the name, and the file stayed under its new one, off the file quota, each round.
   */
  private async unlinkIfStillNamed(): Promise<boolean> {
    const { loc } = this.target;
    const [mine, there] = await Promise.all([this.file.stat(), loc.stat()]);
    if (there === null || there.ino !== mine.ino || there.dev !== mine.dev) return false;
    return loc.unlink().then(
      () => true,
      () => false,
    );
  }

  /**
   * Put the complete staged file in place of the final name, accounted against what
   * is really there now (not at the start): a target renamed or deleted
   * meanwhile frees nothing, nor one with another hard link. Refused, before
   * the rename, when the result would not fit; the old file then stays.
   * The old file is held open across the rename so that its link count
   * afterwards, not a guess, says whether its bytes were freed.
   */
  private replace(staged: StagedFile, written: number, stagedKey: string, first: Target): Promise<Replacement> {
    let looked: Target | null = first;
    // Looked at again when the name changed between the look and the commit (see lookingAgain).
    return lookingAgain(async () => {
      const target = looked ?? (await holdTarget(this.target.loc));
      looked = null;
      return this.replaceLooked(staged, written, stagedKey, target);
    });
  }

  /** replace() against one look at the name (`now`, held by `old`). */
  private async replaceLooked(staged: StagedFile, written: number, stagedKey: string, { st: now, held: old }: Target): Promise<Replacement> {
    try {
      const mayReplace = this.target.mayReplace && (now === null || (await this.target.mayReplaceWhereNow()));
      if (now !== null && !mayReplace) throw this.nameTaken();
      const expected = now ? freedBytes(now) : 0;
      await this.ledger.checkCommit(this.reserved, written, expected, now === null && !this.target.holdsFile);
      // With a quota, a name free at the look is taken without replacing: a file another upload's end put
      // there since, which rename(2) would replace unmeasured (a name and its bytes left on the usage), is
      // looked at again and replaced through its lock, where the upload may replace it. Without one, no
      // check can fail by the usage, and that exactness is not bought per file: the link, the unlink and,
      // with workers, two round trips to the primary for the lock took OpenSSH `sftp put -r` of 200 × 4 KiB
      // from 525-625 to 430-462 files/s (three interleaved pairs of the quick bench). The recount at each
      // start makes the usage exact again; the audit trail's window for such a rename stays (README).
      const exact = !this.ledger.unlimited;
      const commit = async () => {
        await staged.commit(mayReplace && (now !== null || !exact)).catch((err: unknown) => {
          if (!(err instanceof SluiceError && err.kind === 'already-exists')) throw err;
          throw mayReplace ? new NameChanged() : this.nameTaken();
        });
        this.landed(written);
      };
      if (old && now) {
        // Measured across the commit (see dropThrough): the file looked at lost its name to it, or was gone
        // already (another session's removal, which gave its bytes back), and the commit made a name more.
        const { gone, before, after } = await dropThrough(this.ledger, now, old, () => this.target.loc.stat(), commit);
        // On record as the quota counts it: the node looked at, if it lost its name (found by a review: a file
        // replaced by an upload left no trace).
        // The name and the bytes it freed go off the usage apart, once no download holds that file open (see QuotaLedger.freed).
        // Its hash only if already known (a whole upload's receipt): the old file is never read for it.
        return { replaced: replacedThrough(before, after, this.uploadOptions.knownSha256(before)) ?? 'unknown', freed: { key: nodeKey(now), ...gone } };
      }
      // Onto a free name by link(2), the staged file has two names for a moment, its hidden one too: a removal
      // that looked at it then counted a name off but not its bytes (not its last name), which went with the
      // hidden name's unlink, off the usage never (found by test/stress/one-account.ts, 131 KiB at once).
      // Under the file's lock such a removal waits for both.
      // This node's lock only: among the nodes it is a round trip to the store for every new file, and during
      // an outage of it every such upload's end was refused. A removal on another node in the moment between
      // the link and the unlink is not kept out: the usage then errs high by the file's bytes until a recount.
      if (now === null && exact) await outsideInPlaceWrites(this.ledger, stagedKey, commit, 'node');
      else await dropFile(this.ledger, now ? freeingKey(now) : null, commit);
      // Something there but not held: what the commit replaced is unknown, and what it freed the look's guess.
      return { replaced: now === null ? undefined : 'unknown', freed: now === null ? null : { key: nodeKey(now), bytes: expected, names: 1 } };
    } finally {
      // Not waited for: the answer needs nothing more from it.
      void old?.close().catch(() => undefined);
    }
  }
}

/** What an upload's commit changed besides its own file (see replace()). */
interface Replacement {
  replaced: TransferRecord['replaced'];
  freed: Freed | null;
}

/** What the commit took off the disk with the name it replaced: `names` of it, and the bytes of the file `key`. */
interface Freed {
  key: string;
  bytes: number;
  names: number;
}

/** The final name as an upload's end finds it; `held` when something is there, for replace() to measure across the rename. */
interface Target {
  st: NodeStat | null;
  held: HeldNode | null;
}

/**
 * Held first and described through the hold: the description is of the very file measured after the rename.
 * Its failure is for whoever awaits it to see, never an unhandled rejection meanwhile.
 */
function holdTarget(loc: Location): Promise<Target> {
  const target = lookThroughHold(loc);
  target.catch(() => undefined);
  return target;
}

async function lookThroughHold(loc: Location): Promise<Target> {
  // Not held (no descriptor to spare, say): then the name's lstat must do, and replace() counts what it said.
  const held = await loc.hold().catch(() => undefined);
  if (held === undefined) return { st: await loc.stat(), held: null };
  if (held === null) return { st: null, held: null };
  try {
    // Any node, not only a file: what the commit replaces is on record (a symlink put there meanwhile, say).
    return { st: await held.stat(), held };
  } catch (err) {
    void held.close().catch(() => undefined);
    throw err;
  }
}

/**
 * A second, streaming read of the finished file `written`: only for resumed uploads, only when
 * configured. Read by its name, so only while the name still leads to it: another file moved
 * there meanwhile (one the user may not read among them) had its hash recorded as the upload's,
 * and remembered as the receipt HASH and check-file answer for the file written (found by a review).
 */
async function hashFile(loc: Location, written: NodeStat): Promise<string> {
  const file = await loc.openRead();
  const now = await file.stat().catch(async (err: unknown) => {
    await file.close().catch(() => undefined);
    throw err;
  });
  if (now.dev !== written.dev || now.ino !== written.ino) {
    await file.close().catch(() => undefined);
    throw new SluiceError('failure', undefined, 'another file took the name of the upload');
  }
  const hash = new Sha256Stream();
  try {
    for await (const chunk of file.readStream(0)) {
      hash.update(chunk as Buffer);
      await hash.caughtUp();
    }
    return (await hash.digest()) ?? Promise.reject(new Error('hashing thread lost'));
  } finally {
    // A read that failed leaves the stream unfinished: given up, or the thread would keep its place.
    hash.drop();
    await file.close().catch(() => undefined);
  }
}

/** Settles once `p` has (at once for none), however it went. */
function settledOf(p: Promise<unknown> | null): Promise<void> {
  return (p ?? Promise.resolve()).then(
    () => undefined,
    () => undefined,
  );
}
