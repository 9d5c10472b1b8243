import { createHash } from 'node:crypto';
import { SluiceError, sessionClosed } from './errors.js';
import type { RateLimit } from './rate-limit.js';
import { nodeKey, type NodeStat, type OpenFile } from './storage/storage.js';

/**
 * The hashes a client may ask for. SHA-256 is the audit trail's own, the one
 * FTP HASH and SFTP check-file answer; the others are there for the checksum
 * commands that sync tools run over SSH (rclone's md5sum and sha1sum), as a
 * shell account would answer them.
 */
export type HashAlgorithm = 'md5' | 'sha1' | 'sha256' | 'sha384' | 'sha512';

/** What a checksum covers: bytes [offset, end) of the file, hashed in blocks of `blockSize` (0: one hash). */
export interface ChecksumRange {
  readonly offset: number;
  /** 0: to the end of the file. */
  readonly length: number;
  readonly blockSize: number;
}

export interface Checksum {
  readonly algorithm: HashAlgorithm;
  readonly offset: number;
  readonly end: number;
  /** The hash of each block, in order (one when blockSize is 0). */
  readonly digests: Buffer[];
  /** Answered from the upload's record, without reading the file. */
  readonly fromRecord: boolean;
}

/** The whole file, one hash. */
export const WHOLE_FILE: ChecksumRange = { offset: 0, length: 0, blockSize: 0 };

/** Smallest block worth a hash of its own (draft-ietf-secsh-filexfer-extensions: 256). */
export const MIN_BLOCK = 256;
/** Most hashes one answer carries: 128 KiB of digests, within any reply's size. */
const MAX_BLOCKS = 4096;
const READ = 256 * 1024;

/** What a checksum's reads answer to: the session's hashing rate, and the session's end. */
export interface Pace {
  readonly rate: RateLimit | null;
  /** Aborted when the session closes, with a SluiceError as its reason. */
  readonly signal: AbortSignal;
}

/**
 * The hash of a range of an open file, read in pieces with positional reads:
 * memory stays one piece, and each piece first takes its bytes from the
 * session's hashing rate, so a client asking again and again for hashes of a
 * large file costs the server no more than that rate, and only while its
 * session lasts: the signal is looked at before every piece.
 */
export async function hashRange(file: OpenFile, size: number, range: ChecksumRange, pace: Pace, algorithm: HashAlgorithm): Promise<Checksum> {
  const { offset, blockSize } = range;
  if (blockSize !== 0 && blockSize < MIN_BLOCK) throw new SluiceError('failure', `Block size below ${MIN_BLOCK}`);
  if (offset > size) throw new SluiceError('invalid-path', 'Offset beyond end of file');
  const end = range.length === 0 ? size : Math.min(size, offset + range.length);
  if (blockSize !== 0 && Math.ceil((end - offset) / blockSize) > MAX_BLOCKS) throw new SluiceError('failure', 'Too many blocks: ask for larger ones');
  const digests: Buffer[] = [];
  const buf = Buffer.allocUnsafe(READ);
  let hash = createHash(algorithm);
  let inBlock = 0;
  for (let pos = offset; pos < end; ) {
    const want = Math.min(READ, end - pos, blockSize === 0 ? READ : blockSize - inBlock);
    pace.signal.throwIfAborted();
    await pace.rate?.take(want, pace.signal);
    const n = await file.read(buf, 0, want, pos);
    // The file shrank while it was read: what is there is all there is.
    if (n === 0) break;
    hash.update(buf.subarray(0, n));
    pos += n;
    inBlock += n;
    if (blockSize !== 0 && inBlock === blockSize) {
      digests.push(hash.digest());
      hash = createHash(algorithm);
      inBlock = 0;
    }
  }
  if (blockSize === 0 || inBlock > 0 || digests.length === 0) digests.push(hash.digest());
  return { algorithm, offset, end, digests, fromRecord: false };
}

/**
 * The checksums of one connection's sessions (ConnectionBudgets). They run
 * one at a time, in the order asked for, the others waiting before they
 * open anything: they share the connection's hashing rate, so several at
 * once end no sooner together, and each would hold a descriptor and a read
 * buffer meanwhile (an SFTP client may pipeline as many check-file requests
 * as its channels let run). Waiting, not refused: a client that pipelines
 * checksums of many files gets them all, as from OpenSSH's
 * one-request-at-a-time sftp-server. What may wait is bounded by the
 * front-ends (FTP runs one command at a time, SFTP caps the requests in
 * flight per channel and the channels per connection).
 */
export class HashingTurns {
  /** Settles (never rejects) once the last checksum asked for is over. */
  private last: Promise<unknown> = Promise.resolve();

  constructor(private readonly rate: RateLimit | null) {}

  /**
   * `work` once the checksums asked for before it are over; refused once
   * `signal` aborts, at once, without waiting for them: a session that ended
   * must not wait for another channel's checksums before its own end goes on
   * (found by a review: a channel closed behind one hashing 40 MiB at 4 MiB/s
   * was recorded 10 s later). The next turn still waits for every one before.
   */
  run<T>(work: (pace: Pace) => Promise<T>, signal: AbortSignal): Promise<T> {
    const before = this.last;
    const turn = untilAborted(before, signal).then(() => {
      signal.throwIfAborted();
      return work({ rate: this.rate, signal });
    });
    this.last = Promise.allSettled([before, turn]);
    return turn;
  }
}

/** Settles when `settles` does, or as soon as `signal` aborts (never rejects). */
function untilAborted(settles: Promise<unknown>, signal: AbortSignal): Promise<unknown> {
  if (signal.aborted) return Promise.resolve();
  let stop = (): void => undefined;
  const aborted = new Promise<void>((resolve) => {
    stop = () => resolve();
    signal.addEventListener('abort', stop, { once: true });
  });
  return Promise.race([settles, aborted]).finally(() => signal.removeEventListener('abort', stop));
}

/**
 * A session's checksums, in its connection's turns. end() stops the one
 * running at its next piece and refuses the rest: a checksum must not
 * outlive its session, or a client that asks for a large file's hash and
 * goes away leaves the server reading it at the hashing rate, its
 * descriptor open, as often as it reconnects.
 */
export class SessionChecksums {
  private readonly ending = new AbortController();
  /** Settles (never rejects) once this session's last checksum is over: the turns run in order. */
  private last: Promise<unknown> = Promise.resolve();
  /** Checksums asked for and not over: waiting for their turn, or reading. */
  private pending = 0;

  constructor(private readonly turns: HashingTurns) {}

  /** `work` in its turn; refused once the session ended. */
  run<T>(work: (pace: Pace) => Promise<T>): Promise<T> {
    const turn = this.turns.run(work, this.ending.signal);
    this.pending++;
    const over = (): void => void this.pending--;
    this.last = turn.then(over, over);
    return turn;
  }

  /** Whether one is under way (see Session.hashing). */
  get busy(): boolean {
    return this.pending > 0;
  }

  /** Stop them all; resolves once none of this session's runs, its file closed. */
  async end(): Promise<void> {
    this.ending.abort(sessionClosed());
    await this.last;
  }
}

/**
 * The SHA-256 of files this process saw uploaded whole, by node (dev:ino),
 * valid while size and ctime are what they were when the upload ended: a
 * client asking for the hash of what it just sent is answered from the
 * audit record's hash without reading the file again. ctime, not mtime: a
 * client may set a file's mtime (a review rewrote an uploaded file in place
 * through SFTP, set the old mtime back, and HASH answered the upload's hash),
 * but any change of the file, by sluice, another worker or the host, moves
 * its ctime. Bounded: the oldest entries go first. Per process: with
 * workers, an upload served by another worker (or before a restart) is
 * hashed from the file instead.
 */
export class UploadReceipts {
  private readonly byNode = new Map<string, { size: number; ctimeMs: number; sha256: string }>();

  constructor(private readonly max = 10_000) {}

  remember(node: string, size: number, ctimeMs: number, sha256: string): void {
    this.byNode.delete(node);
    this.byNode.set(node, { size, ctimeMs, sha256 });
    if (this.byNode.size > this.max) this.byNode.delete(this.byNode.keys().next().value as string);
  }

  /** The receipt of the node `st` describes, as it is: a regular file's only. */
  of(st: NodeStat): string | null {
    const r = st.type === 'file' ? this.byNode.get(nodeKey(st)) : undefined;
    return r && r.size === st.size && r.ctimeMs === st.ctimeMs ? r.sha256 : null;
  }

  /**
   * `act`, a rename(2) or link(2) of the file `looked` describes, with its
   * receipt kept: those move a file's ctime, not its bytes, and an upload
   * under a temporary name renamed at its end (WinSCP's name.filepart,
   * Net::SFTP::Foreign's atomic put, lftp's and rclone's partial names) lost
   * it, so a HASH right after read the file again, and what later replaced
   * the file had no sha256 on record (found by an interop sweep). Kept for
   * the ctime `lookAfter` finds only if that is the same file, unchanged
   * (see unchangedSince). Looked at again only for a file with a receipt: a
   * rename of any other costs what it did.
   */
  async across<T>(looked: NodeStat, act: () => Promise<T>, lookAfter: () => Promise<NodeStat | null>): Promise<T> {
    const sha256 = this.of(looked);
    const out = await act();
    if (sha256 !== null) {
      const now = await lookAfter().catch(() => null);
      if (now !== null && unchangedSince(looked, now)) this.remember(nodeKey(now), now.size, now.ctimeMs, sha256);
    }
    return out;
  }
}

/**
 * Whether `now` is the file `then` describes, its bytes unchanged as far as
 * a look can tell: same node, size and mtime. Not its ctime, which the act
 * between the two looks moves (an upload's rename into place, a client's
 * rename or link); a write in place in between would otherwise lend its
 * ctime to a hash of the bytes before it, unless it also set the mtime back
 * within that instant.
 */
export function unchangedSince(then: NodeStat, now: NodeStat): boolean {
  return now.dev === then.dev && now.ino === then.ino && now.size === then.size && now.mtime.getTime() === then.mtime.getTime();
}
