import { once } from 'node:events';
import { close as closeFd, closeSync, constants, fstat, fstatSync, mkdirSync, open as openFd, openSync, promises as fsp, readSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import pino from 'pino';
import { errnoWords } from '../errno-words.js';
import { regularFile } from '../regular-file.js';
import { rotatedSiblings } from './files.js';

export type NewFileReason = 'size' | 'reopen';

export interface LogFileOptions {
  /** Start a new file once the current one reaches this many bytes; 0: never. */
  maxSize: number;
  /** Called right after a new file is started, before any other line goes into it. */
  onNewFile?: (reason: NewFileReason) => void;
  /** A write or a rotation failed; the log carries on where it can. */
  onError: (err: Error) => void;
  /** How long each timed flush took, from asking to the bytes handed to the file. */
  onFlushed?: (seconds: number) => void;
  /**
   * Lines the file has not taken (its disk full) passed MAX_UNWRITTEN bytes
   * (true), or fell back under half of it (false).
   */
  onBacklog?: (over: boolean) => void;
}

/**
 * Past this many bytes of lines not yet written, the file says so
 * (onBacklog): the server then stops making records (AuditLog) rather
 * than hold without end what it cannot write.
 */
export const MAX_UNWRITTEN = 8 * 1024 * 1024;

type Stream = ReturnType<typeof pino.destination>;

/** A file being written, and which file it is (to see whether logrotate moved it). */
interface OpenFile {
  stream: Stream;
  /** The file's identity, read from its descriptor; null when it could not be read. */
  identity: Promise<{ dev: number; ino: number } | null>;
  /** Bytes handed to this stream and not written yet (counted in LogFile.unwritten too). */
  pending: number;
}

/**
 * An append-only log file written asynchronously from a buffer (sonic-boom),
 * never more than a second behind, that can be rotated without losing or
 * reordering a line: lines written while a rotation is under way still go to
 * the old file (renaming does not move its descriptor); the next line goes to
 * the new one. Rotated files are named like logrotate's: `name.1` newest.
 */
export class LogFile {
  private current: OpenFile;
  private size: number;
  private switching: Promise<void> | null = null;
  /** The last of the tasks run one at a time (exclusive()): rotations, and retention of the rotated files. */
  private maintenance: Promise<void> = Promise.resolve();
  private readonly flusher: NodeJS.Timeout;
  private closed = false;
  /** Lines written since the last timed flush. */
  private unflushed = false;
  /**
   * A new file that could not be made (out of inodes, the directory not
   * writable...): why it was wanted, tried again at each timed flush; lines
   * go on into the current file meanwhile. null: none is owed.
   */
  private owed: NewFileReason | null = null;
  /** Bytes handed to a stream and not written yet. */
  private unwritten = 0;
  /** Writes failed since the last one that went through: only the first of a run is reported. */
  private failedWrites = 0;
  /** onBacklog(true) was said, and not yet onBacklog(false). */
  private over = false;

  constructor(
    readonly path: string,
    private readonly options: LogFileOptions,
  ) {
    // Start-up only (synchronous by design): a log that cannot be written
    // stops the server here, with the reason, rather than lose every line.
    mkdirSync(dirname(path), { recursive: true });
    // The size so far decides the first rotation.
    const { size, unfinished } = endOf(path);
    this.size = size;
    this.current = this.adopt(openSync(path, 'a', 0o600));
    this.flusher = setInterval(() => this.timedFlush(), 1000);
    this.flusher.unref();
    // A last line a crash left unfinished is ended by the first write, in the same write(2) as the line
    // after it (the start's anchor, which records the fragment). Ended on its own, a start killed before
    // its anchor landed left a fragment no record names, and every start after refused the trail.
    if (unfinished) this.write('\n');
  }

  /**
   * The once-a-second flush. Timed only when there is something to write:
   * sonic-boom answers an empty buffer at once, which says nothing of the file.
   */
  private timedFlush(): void {
    if (this.owed !== null && !this.switching && !this.closed && this.failedWrites === 0) this.switchFile(this.owed, async () => undefined);
    const { stream } = this.current;
    const onFlushed = this.unflushed ? this.options.onFlushed : undefined;
    this.unflushed = false;
    const start = process.hrtime.bigint();
    try {
      if (!onFlushed) stream.flush();
      else stream.flush((err) => void (err ?? onFlushed(Number(process.hrtime.bigint() - start) / 1e9)));
    } catch (err) {
      this.options.onError(err as Error);
    }
  }

  /**
   * Hand what is buffered to the file now, not within the second: the first
   * line of a new file or run, without which audit verify takes the file for
   * emptied (found by a review: 1 verify in 8 right after a logrotate move
   * said so).
   */
  flushNow(): void {
    try {
      this.current.stream.flush();
    } catch (err) {
      this.options.onError(err as Error);
    }
  }

  write(line: string): void {
    if (this.closed) {
      // A session still closing as the server stops: the line goes to the error log rather than crash the exit.
      this.options.onError(new Error(`line written after close, not in ${basename(this.path)}: ${line.trimEnd()}`));
      return;
    }
    this.current.stream.write(line);
    this.unflushed = true;
    const bytes = Buffer.byteLength(line);
    this.size += bytes;
    this.current.pending += bytes;
    this.unwritten += bytes;
    if (!this.over && this.unwritten > MAX_UNWRITTEN) {
      this.over = true;
      this.options.onBacklog?.(true);
    }
    // A new file owed already (see owed) is tried each second: shifting the rotated files meanwhile would move the one written.
    // Nor while its writes fail (its disk full): the file let go of could not write its last lines, and
    // its end would never come (found by a review: the switch, and the stop behind it, waited for ever).
    if (this.options.maxSize > 0 && this.size >= this.options.maxSize && !this.switching && this.owed === null && this.failedWrites === 0) {
      this.switchFile('size', () => shiftRotated(this.path));
    }
  }

  /**
   * SIGHUP: when the file was moved away (logrotate), continue in a new one
   * at the configured path. A file still in place is kept.
   */
  async reopen(): Promise<void> {
    await this.switching;
    // Closed: a new file now would be one nothing writes to, and its retention would delete unrecorded.
    if (this.closed) return;
    const current = await this.current.identity;
    const atPath = await fsp.stat(this.path).catch(() => null);
    if (atPath && current && atPath.ino === current.ino && atPath.dev === current.dev) return;
    // Not while its writes fail (see write): owed, and made once they go through again.
    if (this.failedWrites > 0) {
      this.owed = 'reopen';
      return;
    }
    this.switchFile('reopen', async () => undefined);
    await this.switching;
  }

  /**
   * Run `task` once no rotation or earlier task is under way, and hold off
   * rotations until it ends. Retention takes its files by name and deletes
   * them by name several awaits later: a rotation in between (which renames
   * every rotated file up one) would have it delete another file than the
   * one it checked.
   */
  exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.maintenance.then(task);
    this.maintenance = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /**
   * Within exclusive(): hand the current file's buffered lines to it. No
   * rotation can be under way, and none waits for this (flush() would, for
   * one queued behind the task).
   */
  async flushCurrent(): Promise<void> {
    const { stream, identity } = this.current;
    if (!(await identity)) return;
    await new Promise<void>((resolve) => stream.flush(() => resolve()));
  }

  private switchFile(reason: NewFileReason, prepare: () => Promise<void>): void {
    // The whole switch holds off retention: it finds the old file closed, the new one begun.
    this.switching = this.exclusive(async () => {
      try {
        // The file must exist before it can be moved (a burst can fill one before it is open).
        await this.current.identity;
        await prepare();
      } catch (err) {
        // Keep writing to the current file; try again after another maxSize.
        this.size = 0;
        this.options.onError(err as Error);
        return;
      }
      // The new file is opened before the current one is let go: one that cannot be made (out of inodes,
      // the directory not writable) used to become the current file all the same, a stream with no
      // descriptor that threw from write() and whose lines a later switch dropped (found by a review).
      let fd: number;
      try {
        fd = await openAppend(this.path);
      } catch (err) {
        this.size = 0;
        if (this.owed === null) this.options.onError(notMade(this.path, reason, err));
        this.owed = reason;
        return;
      }
      this.owed = null;
      const old = this.current;
      this.size = 0;
      this.current = this.adopt(fd);
      this.options.onNewFile?.(reason);
      this.flushNow();
      // Its writes went through when the switch began; a disk that fills meanwhile fails its end, which
      // then gives up what it holds (said so) rather than wait for room that may never come.
      await endFile(old, (err) => this.givenUp(old, err), this.failedWrites > 0);
    }).finally(() => {
      this.switching = null;
    });
  }

  /** The file open as `fd` (appending), as the one written. */
  private adopt(fd: number): OpenFile {
    const stream = pino.destination({ dest: fd, sync: false, minLength: 4096 });
    const identity = once(stream, 'ready').then(
      () => {
        try {
          const st = fstatSync(fd);
          return { dev: st.dev, ino: st.ino };
        } catch {
          return null;
        }
      },
      () => null,
    );
    const file: OpenFile = { stream, identity, pending: 0 };
    stream.on('error', (err: Error) => this.writeFailed(err));
    stream.on('write', (n: number) => {
      file.pending -= n;
      this.written(n);
    });
    return file;
  }

  /** A stream ended with lines it could not write: they are lost, and no longer count as waiting. */
  private givenUp(file: OpenFile, err: Error): void {
    this.options.onError(new Error(`${basename(this.path)} closed with lines not written: ${err.message}`));
    this.unwritten -= file.pending;
    file.pending = 0;
    this.backlogFell();
  }

  /**
   * A write failed; the stream keeps the lines and tries them again with the
   * next. A disk full fails every one of them: reported once, not a line per
   * try (found by a review: 19,000 error lines for 43,000 records).
   */
  private writeFailed(err: Error): void {
    if (this.failedWrites++ === 0) this.options.onError(err);
  }

  private written(bytes: number): void {
    this.unwritten -= bytes;
    if (this.failedWrites > 0) {
      this.options.onError(new Error(`${basename(this.path)} written again, after ${this.failedWrites} failed write(s)`));
      this.failedWrites = 0;
    }
    this.backlogFell();
  }

  private backlogFell(): void {
    if (this.over && this.unwritten < MAX_UNWRITTEN / 2) {
      this.over = false;
      this.options.onBacklog?.(false);
    }
  }

  /** Hand everything buffered to the file. */
  async flush(): Promise<void> {
    await this.switching;
    const { stream, identity } = this.current;
    if (!(await identity)) return;
    await new Promise<void>((resolve) => stream.flush(() => resolve()));
  }

  /**
   * Write out everything buffered and close the file; called on shutdown. A
   * write that fails then (the disk full) ends it: what was not written is
   * lost and said so, where waiting for room held the stop for ever.
   */
  async close(): Promise<void> {
    clearInterval(this.flusher);
    await this.switching;
    this.closed = true;
    await endFile(this.current, (err) => this.givenUp(this.current, err));
  }
}

/**
 * Start-up only: create the file; its size, and whether a crash left its last
 * line unfinished (the constructor ends it, so that the next line is not glued
 * onto the fragment).
 */
function endOf(path: string): { size: number; unfinished: boolean } {
  const fd = openSync(path, constants.O_RDONLY | constants.O_CREAT | constants.O_NONBLOCK, 0o600);
  try {
    const { size } = regularFile(fstatSync(fd), path);
    const last = Buffer.alloc(1);
    return { size, unfinished: size > 0 && !(readSync(fd, last, 0, 1, size - 1) === 1 && last[0] === 0x0a) };
  } finally {
    closeSync(fd);
  }
}

/** Appending, created 0600 when missing, never waiting in the open (see openAppend). */
/**
 * A new file that could not be made, in one line naming it, what it was for
 * and what happens meanwhile: the server logged libuv's words under the
 * message 'audit log', with a stack (found by an operator's review).
 */
function notMade(path: string, reason: NewFileReason, err: unknown): FileNotMade {
  const wanted = reason === 'reopen' ? 'after the file was moved away (SIGHUP)' : 'to rotate the file at its size';
  return new FileNotMade(
    `a new ${path} could not be made ${wanted}: ${errnoWords(err)}; lines go on into the file before it, and the new one is tried again each second`,
    (err as NodeJS.ErrnoException).code,
  );
}

/** A new log file that could not be made (the file system's refusal, or what stands in its place): the operator's to fix. */
export class FileNotMade extends Error {
  override readonly name = 'FileNotMade';
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

const APPEND_FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK;

/** Open (or create, 0600) `path` for appending, its directory made if missing: the descriptor. */
async function openAppend(path: string): Promise<number> {
  await fsp.mkdir(dirname(path), { recursive: true }).catch(() => undefined);
  // Not blocking, and a regular file only: a FIFO put in the log's place before a SIGHUP held the switch
  // in this open for ever, and the stop behind it (found by a review).
  // A bare descriptor, not a FileHandle: the stream owns it, and a FileHandle let go closes it when collected.
  const fd = await new Promise<number>((resolve, reject) => openFd(path, APPEND_FLAGS, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
  try {
    regularFile(await new Promise<Stats>((resolve, reject) => fstat(fd, (err, st) => (err ? reject(err) : resolve(st)))), path);
  } catch (err) {
    closeFd(fd, () => undefined);
    throw err;
  }
  return fd;
}

/**
 * End the file's stream. A write that fails ends it: the stream destroyed
 * and the failure handed to `giveUp` (its lines are lost either way; waiting
 * for room held the stop, or a switch and all behind it, for ever).
 * `failing`: a write has failed already and none gone through since;
 * sonic-boom tries again only when written to, so its end might never come:
 * it is given up at once.
 */
async function endFile({ stream, identity }: OpenFile, giveUp: (err: Error) => void, failing = false): Promise<void> {
  if (!(await identity)) return;
  const failed = failing
    ? new Error('its writes were failing')
    : await new Promise<Error | null>((resolve) => {
        stream.once('close', () => resolve(null));
        stream.once('error', (err: Error) => resolve(err));
        stream.end();
      });
  if (failed === null) return;
  giveUp(failed);
  const closed = once(stream, 'close').catch(() => undefined);
  stream.destroy();
  await closed;
}

/** name.N(.gz) -> name.N+1(.gz), highest first so nothing is overwritten, then name -> name.1. */
async function shiftRotated(path: string): Promise<void> {
  const dir = dirname(path);
  const base = basename(path);
  for (const { name, n, gz } of rotatedSiblings(base, await fsp.readdir(dir))) {
    await fsp.rename(join(dir, name), join(dir, `${base}.${n + 1}${gz ? '.gz' : ''}`));
  }
  await fsp.rename(path, `${path}.1`);
}
