import { constants, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { isatty } from 'node:tty';
import type { prettyFactory } from 'pino-pretty';
import pino, { type Logger } from 'pino';
import type { AuditMetrics } from '../metrics/events.js';
import { regularFile } from '../regular-file.js';
import { escapedJsonText } from '../session/unsafe-chars.js';
import type { Actor, AuditEvent, AuditSink, SystemAuditSink, SystemEvent } from './events.js';
import { GENESIS, MAX_RECORD_BYTES, chainLine, lastLines, tearOf, type ChainHead } from './chain.js';
import { logFiles } from './files.js';
import { LongEnd, fileEnd } from './file-end.js';
import { LogFile } from './log-file.js';
import { applyKeep, applyKeepUnchained, type KeepOutcome, type KeepPolicy } from './retention.js';
import { stdoutLines } from './stdout.js';
import { xferlogLine } from './xferlog.js';

/** Never let a secret reach a log line, whatever object it arrives in. */
const REDACT = {
  paths: ['password', '*.password', 'hash', '*.hash', 'passwordHash', '*.passwordHash', 'secret', '*.secret'],
  censor: '[redacted]',
};

export function createLogger(level: string, format: LogFormat): Logger {
  // Lines go to stdout asynchronously, and are dropped once it fails (a closed terminal,
  // a pipe without reader): see stdoutLines. Handed over as a bare writer, so pino never
  // flushes synchronously itself; a fatal line is still written before the process exits.
  const stdout = stdoutLines();
  const pretty = format === 'pretty' || (format === 'auto' && isatty(1)) ? prettyLines() : null;
  // A client's text in a line (the name of a failed login) keeps C0 escaped by JSON, but CSI (U+009B), NEL
  // and the bidi controls would reach the operator's console, or whatever reads the lines, as they are.
  const write = pretty ? (line: string) => stdout.write(escapedJsonText(pretty(line))) : (line: string) => stdout.write(escapedJsonText(line));
  return pino({ level, redact: REDACT, base: { pid: process.pid } }, { write });
}

/** logFormat: `auto` is pretty on a terminal and JSON lines otherwise (a pipe, a file, journald). */
export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * pino-pretty's formatter, called in this thread on each line: as a pino
 * transport it would start a worker thread in every process of the server.
 * Loaded only when used, since it adds about 1.8 MiB to each process.
 */
function prettyLines(): (line: string) => string {
  const { prettyFactory: factory } = createRequire(import.meta.url)('pino-pretty') as { prettyFactory: typeof prettyFactory };
  return factory({ colorize: isatty(1), translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l', ignore: 'hostname' });
}

export interface AuditLogOptions {
  /** The chained JSON lines. */
  file: string;
  /** The node id (config nodeId) carried in every line: this file's chain is that node's. */
  node: string;
  /** Rotate at this size (bytes); 0: never by size. */
  rotateSize: number;
  /** Retention of the rotated files (audit.keep). */
  keep: KeepPolicy;
  /** wu-ftpd xferlog of the transfers as well; null: none. */
  xferlog: string | null;
  /** ftp.anonymous is on (absent: off): the xferlog marks its logins' transfers (xferlogLine). */
  anonymousFtp?: boolean;
  /** Where a failing write or rotation is reported; the server keeps serving. */
  onError: (err: Error) => void;
  /** Told of each line of the trail and how long each timed flush of the file took. */
  metrics?: AuditMetrics;
  /**
   * Told when the trail or the xferlog holds more than MAX_UNWRITTEN bytes
   * its file has not taken (true), and when both are back under half of it.
   */
  onBacklog?: (over: boolean) => void;
  /** Told, at the start, of a last line a crash left torn (its size), which the start's anchor records. */
  onTorn?: (bytes: number) => void;
}

/**
 * Audit trail as JSON lines, each chained to the one before (sequence number
 * and SHA-256 of the previous line), so an edit, a removal, an insertion or a
 * reordering shows (`sluice audit verify`). Lines are built here rather than
 * by pino so the bytes hashed are the bytes written. A record is taken as it
 * comes (stamped with its time) and chained once the turn of the event loop
 * that took it is over (see chainTaken), in the order taken: the reply its
 * request waits for goes out before its line is built and hashed. Lines are
 * written asynchronously from a buffer, so a transfer never waits on the
 * audit file, and never more than a second late. The chain runs on across
 * restarts and rotations: each new run and each new file starts with an
 * anchor line.
 * A line torn by a crash stays where it is, outside the chain: the restart
 * ends it with a newline and its anchor records the fragment (`torn`).
 * Every line names its node (`node`), under the hash like the rest, so the
 * chains of several nodes can be verified apart and their records merged.
 */
export class AuditLog implements AuditSink, SystemAuditSink {
  private readonly file: LogFile;
  private readonly xferlog: LogFile | null;
  private head: ChainHead;
  /** The last retention pass queued (close() waits for it). */
  private keeping: Promise<void> = Promise.resolve();
  /** Its files over their backlog (LogFileOptions.onBacklog). */
  private readonly behind = new Set<string>();
  /** Records taken and not chained yet, in the order taken (see chainTaken). */
  private taken: Taken[] = [];

  /** The trail of `options.file`, its chain continued from where the files on disk leave it (see recover). */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    return new AuditLog(options, await recover(options.file));
  }

  private constructor(
    private readonly options: AuditLogOptions,
    { head, fragment, node }: Recovered,
  ) {
    this.head = head;
    if (node !== null && node !== options.node) {
      // One chain has one writer: a file another node writes too would interleave two chains into a broken one.
      options.onError(
        new Error(`${options.file} was last written by node "${node}", this is node "${options.node}": unless nodeId was changed, two nodes share this audit file (each needs its own audit.file)`),
      );
    }
    this.file = new LogFile(options.file, {
      maxSize: options.rotateSize,
      onNewFile: (reason) => {
        // The new file's first line, ahead of the records still to chain: they follow it there.
        this.chain(this.stamped({ event: 'audit-rotated', reason }));
        this.applyKeep();
      },
      onError: options.onError,
      onBacklog: (over) => this.backlog(options.file, over),
      ...(options.metrics ? { onFlushed: (seconds: number) => options.metrics?.flushed(seconds) } : {}),
    });
    const { xferlog } = options;
    this.xferlog =
      xferlog === null
        ? null
        : new LogFile(xferlog, {
            maxSize: options.rotateSize,
            onNewFile: () => this.applyXferlogKeep(xferlog),
            onError: options.onError,
            onBacklog: (over) => this.backlog(xferlog, over),
          });
    this.write({ event: 'audit-start', pid: process.pid, ...(fragment ? { torn: tearOf(fragment) } : {}) });
    if (fragment) options.onTorn?.(fragment.length);
    this.chainTaken();
    this.file.flushNow();
    this.applyKeep();
    if (xferlog !== null) this.applyXferlogKeep(xferlog);
  }

  private backlog(file: string, over: boolean): void {
    const was = this.behind.size > 0;
    if (over) this.behind.add(file);
    else this.behind.delete(file);
    if (was !== this.behind.size > 0) this.options.onBacklog?.(!was);
  }

  /** audit.keep: delete rotated files beyond it that chain into their successor; each deletion is a record. */
  private applyKeep(): void {
    this.keepPass(this.file, (now, report) => applyKeep(this.options.file, this.options.keep, now, report));
  }

  /** audit.keep for the xferlog's rotated files as well: they have no chain to check; each deletion is a record. */
  private applyXferlogKeep(path: string): void {
    if (this.xferlog) this.keepPass(this.xferlog, (now, report) => applyKeepUnchained(path, this.options.keep, now, report));
  }

  private keepPass(file: LogFile, pass: (now: number, report: (o: KeepOutcome) => void) => Promise<void>): void {
    const { keep } = this.options;
    if (keep.count === 0 && keep.days === 0) return;
    // Never beside a rotation of that file (see LogFile.exclusive), and with the new file's first line on disk.
    this.keeping = this.keeping
      .then(() =>
        file.exclusive(async () => {
          await file.flushCurrent();
          await pass(Date.now(), (outcome) => this.write(outcome));
        }),
      )
      .catch((err: Error) => this.options.onError(err));
  }

  record(actor: Actor, event: AuditEvent): void {
    const time = new Date();
    this.write(event, time, actor);
    if (this.xferlog && (event.event === 'upload' || event.event === 'download')) {
      this.xferlog.write(xferlogLine(actor, event, time, this.options.anonymousFtp ?? false) + '\n');
    }
  }

  system(event: SystemEvent): void {
    this.write(event);
  }

  /**
   * Take a record: chained once this turn of the event loop is over, after
   * the records taken before it. Its fields are copied now, one level deep:
   * a record is an object built for the call, never changed after it.
   */
  private write(fields: object, time = new Date(), actor?: Actor): void {
    this.taken.push(this.stamped(fields, time, actor));
    // Once a turn: every record the turn takes waits in `taken` for the same pass.
    if (this.taken.length === 1) {
      setImmediate(this.chainTaken);
      chainedAtExit(this.chainTaken);
    }
    this.options.metrics?.linesWritten(1);
  }

  /** A record as its line carries it: the writer says which node and when, which a record (a worker's message among them) cannot. */
  private stamped(fields: object, time = new Date(), actor?: Actor): Taken {
    // Built as chainLine builds its line, for the same reason (see there); the actor spread in
    // here rather than into a copy of its own, which starting with a spread was as slow.
    const { node } = this.options;
    const at = time.toISOString();
    const stamped: Record<string, unknown> = { node, time: at, ...actor, ...fields };
    stamped.node = node;
    stamped.time = at;
    return { stamped, actor };
  }

  /**
   * Chain the records taken, in the order taken, once the turn that took
   * them is over (setImmediate) rather than as they come: a line's JSON and
   * SHA-256 are work no reply needs, and a request that records (an SFTP
   * CLOSE, an FTP transfer's end) did it before its reply was written. A
   * record taken later, of any session, is chained later, whenever this
   * runs: what a client sends once it has a reply is recorded after that
   * request's record. A crash loses no more than before: killed, these
   * records are lost as the buffer's lines are; ended by an exception or
   * process.exit, they are chained as it exits, before pino writes the
   * buffer (pendingAtExit).
   */
  private readonly chainTaken = (): void => {
    pendingAtExit.delete(this.chainTaken);
    const taken = this.taken;
    this.taken = [];
    for (const record of taken) this.chain(record);
  };

  private chain({ stamped, actor }: Taken): void {
    let { line, head } = chainLine(this.head, stamped);
    // A line's UTF-8 is at most 3 bytes a UTF-16 unit: most need no count. Records are bounded (MAX_RECORD_BYTES);
    // one that is not would be a line every reader refuses, breaking the chain for good: its place is said instead.
    if (line.length * 3 > MAX_RECORD_BYTES && Buffer.byteLength(line) > MAX_RECORD_BYTES) {
      const bytes = Buffer.byteLength(line);
      const { node, time, event } = stamped;
      ({ line, head } = chainLine(this.head, { node, time, ...actor, event: 'audit-record-too-long', record_event: typeof event === 'string' ? event : null, bytes }));
      this.options.onError(new Error(`audit: a record (${String(event)}) of ${bytes} bytes is longer than any record may be (${MAX_RECORD_BYTES}): written as audit-record-too-long`));
    }
    this.head = head;
    this.file.write(line + '\n');
  }

  /** SIGHUP: continue in new files if logrotate moved the current ones away. */
  async reopen(): Promise<void> {
    await Promise.all([this.file.reopen(), this.xferlog?.reopen()]);
  }

  /** Hand everything buffered to the files, the records taken this turn among it. */
  async flush(): Promise<void> {
    this.chainTaken();
    await Promise.all([this.file.flush(), this.xferlog?.flush()]);
  }

  /** Write out everything buffered and close the files; called on shutdown. */
  async close(): Promise<void> {
    // A deletion record can start a rotation, which queues another pass: wait for the last one.
    for (let pass: Promise<void> | null = null; pass !== this.keeping; ) {
      pass = this.keeping;
      await pass;
      // A rotation started by that pass's records queues the next pass once it is done.
      await this.flush();
    }
    this.chainTaken();
    await Promise.all([this.file.close(), this.xferlog?.close()]);
  }
}

/**
 * The trails' chainTaken while they hold records taken and not chained yet,
 * called as the process exits (an uncaught exception, process.exit) ahead
 * of pino's own exit listener, which writes each file's buffer synchronously:
 * chained as they came, such records were in that buffer and on disk after
 * a crash by an exception; taken for the turn's end, they were lost with it
 * (found by a review: the record of a request answered in the turn that
 * crashed).
 */
const pendingAtExit = new Set<() => void>();
let listeningAtExit = false;

function chainedAtExit(chainTaken: () => void): void {
  pendingAtExit.add(chainTaken);
  if (listeningAtExit) return;
  listeningAtExit = true;
  process.prependListener('exit', () => {
    for (const chain of pendingAtExit) chain();
  });
}

/** A record taken (see AuditLog.write): its line's fields, and who acted, for a record too long to be written. */
interface Taken {
  stamped: Record<string, unknown>;
  actor: Actor | undefined;
}

interface Recovered {
  head: ChainHead;
  fragment: Buffer | null;
  node: string | null;
}

/**
 * Start-up only, before the trail is written: continue the chain from the last
 * complete line, in the live file or, when logrotate has just moved it away,
 * in the newest rotated one; and find a line torn by a crash at the end of
 * the newest file written (the chain continues from the line before it);
 * and the node that wrote that last line. A file whose last complete line is
 * not a chain record stops the start: going on from an older line, or from
 * nothing, would write a chain `sluice audit verify` rejects for good.
 */
async function recover(path: string): Promise<Recovered> {
  let fragment: Buffer | null | undefined;
  for (const file of [...logFiles(path)].reverse().slice(0, 2)) {
    const text = await tail(file);
    if (text === null || text.length === 0) continue;
    const end = lastLines(text);
    if (fragment === undefined) fragment = end.fragment;
    if (end.head) return { head: end.head, fragment, node: end.node };
    // No complete line (a crash during a new file's first one): the chain stands where the file before left it.
    if (text.includes(0x0a)) {
      throw new Error(
        `${file}: its last complete line is not an audit record, so the chain cannot be continued from it. ` +
          'Look at that line: restore it if it was altered, or, if it is a fragment left by a crash whose restart ' +
          'crashed before recording it, end the file after the record before it; then start sluice again',
      );
    }
  }
  return { head: { seq: 0, prev: GENESIS }, fragment: fragment ?? null, node: null };
}

/**
 * A log's end from its last complete line on (see fileEnd): read back from
 * the end, a gzipped one streamed through (read whole, a .gz logrotate made
 * of a day's trail held its whole text at once, and over 2 GiB stopped the
 * start). null: no such file.
 */
async function tail(file: string): Promise<Buffer | null> {
  let fh: FileHandle;
  try {
    // Not blocking: a FIFO put in the log's place held the start in this open for ever, deaf to SIGTERM (found by a review).
    fh = await fsp.open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    regularFile(await fh.stat());
    return await fileEnd(fh, file);
  } catch (err) {
    // Read errors (a directory configured as the log) name no file of their own; a LongEnd says what to look at.
    if (err instanceof LongEnd) throw new Error(`${err.message}. Look at that end of the file: the chain cannot be continued from it; then start sluice again`);
    throw new Error(`cannot read the audit log ${file}: ${(err as Error).message}`);
  } finally {
    await fh.close();
  }
}
