import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { SluiceError } from '../session/errors.js';
import { LazyMap, LazySet } from '../session/lazy-collections.js';
import { isWithin, overlaps } from '../session/paths.js';
import type { Session } from '../session/session.js';
import { HELD_OVERHEAD, type ByteBudget } from './budget.js';
import { BadMessage, FXP, PacketFramer, Reader, STATUS, Writer, recycleReply, statusPacket, type Packet } from './codec.js';
import { HandleTable } from './handles.js';
import {
  advertisedExtensions, changesByPath, handleOrderKey, leadingRun, ok, pathsNamed, specFor, workingBytes, writeRequest, writeThrough, type HandlerContext,
  type WriteRequest,
} from './handlers.js';
import { statusFor } from './status.js';

export interface ChannelOptions {
  maxHandles: number;
  /** Requests being worked on at once; past it we stop reading (OpenSSH clients keep 64 in flight). */
  maxInFlight: number;
  /** Shared by the channels of one connection: what requests and unsent replies may hold. */
  budget: ByteBudget;
  /** Called on every incoming chunk, once the stream gave it up (idle timer, SSH window). */
  onActivity(): void;
  /** SYMLINK argument order of this client (see HandlerContext). */
  symlinkTargetFirst: boolean;
  /** Report the subsystem's exit status (ssh and scp exit non-zero without one). */
  exit(status: number): void;
  /**
   * Aborted once the client closed the channel or the connection dropped.
   * ssh2 says so on the channel only once what the client sent has been
   * read, and a channel whose reading stopped (its budget full of replies
   * nobody will take) never got there: its session never ended.
   */
  gone: AbortSignal;
}

/** A request waiting for the ones before it ordered on the same handle (RequestSpec.orderedOn). */
interface Queued {
  packet: Packet;
  run(): Promise<Buffer>;
  done(reply: Buffer): void;
}

/** A CLOSE of a file or a change by path, received and not yet answered (see SftpChannel.dispatch). */
interface PathTurn {
  /** The clean paths it acts on; null: every path (see SftpChannel.renaming). */
  names: string[] | null;
  /** A CLOSE's: its file is committed wherever its directory is by then. */
  readonly closes: boolean;
  readonly reply: Promise<Buffer>;
}

/** Whether two requests' paths (see PathTurn.names) overlap: one the same as the other's, or above or below it. */
function overlapping(a: readonly string[] | null, b: readonly string[] | null): boolean {
  return a === null || b === null || a.some((x) => b.some((y) => overlaps(x, y)));
}

/** Bytes of consecutive WRITEs put in one write at most. */
const MAX_WRITE_RUN = 2 * 1024 * 1024;
/** Reply bytes handed to ssh2 in one turn of the event loop at most (see SftpChannel.flush). */
const TURN_BYTES = 256 * 1024;
/** How long the CLOSEs received before the channel's close are let finish (see endSession), at most. */
const CLOSE_GRACE_MS = 2000;

/** What a reply holds of the budget until the transport has taken it: its bytes and its keeping. */
function replyCost(reply: Buffer): number {
  return reply.length + HELD_OVERHEAD;
}

/** A READ's handle, as a map key (see handleOrderKey); null when the READ is malformed (answered BAD_MESSAGE at once). */
function readHandle(packet: Packet): string | null {
  try {
    return new Reader(packet.payload).bytes().toString('hex');
  } catch {
    return null;
  }
}

/**
 * The SFTP request loop on one subsystem channel. Backpressure both ways:
 * a request starts only while fewer than maxInFlight run and the connection's
 * byte budget can hold it, its reply and what it works with (a READ counts
 * the data it will answer with, a copy its chunk); replies count until the
 * client has taken them. Otherwise the framed requests wait and reading
 * stops, so the client's window shuts and memory stays bounded whatever the
 * client does. Every request gets exactly one reply, those that came
 * before the client's EOF included (see finishInput).
 */
export class SftpChannel {
  private readonly framer = new PacketFramer();
  private readonly handles: HandleTable;
  private readonly ctx: HandlerContext;
  /** Framed but not started, as the limits held it back: one request at most (the rest wait as bytes in the framer). */
  private framed: Packet | null = null;
  private inFlight = 0;
  /** Of those, READs: their replies are bytes a download owes too (see closed, in the constructor). */
  private readsInFlight = 0;
  /** Per handle, the requests ordered on it, in order, the one running first (see ordered()). */
  private readonly writes = new LazyMap<string, Queued[]>();
  /** Per handle, the reply of the last request ordered on it, until it is answered (see dispatch: a READ waits for it). */
  private readonly lastOrdered = new LazyMap<string, Promise<Buffer>>();
  /**
   * Per handle, the sending of the reply to the last READ received on it (see dispatch): READs run side by
   * side, but their replies leave in the order the READs came, as from OpenSSH's server and pkg/sftp's.
   * JSch takes a reply to any but its oldest READ as a loss, drops every READ outstanding and asks again:
   * answered as they completed, its get of a 5 MiB file read 9 to 16 MiB, recorded with no SHA-256.
   */
  private readonly readReplies = new LazyMap<string, Promise<void>>();
  /**
   * CLOSEs of files and changes by path (see changesByPath) received and
   * not yet answered, with the paths they act on: a request by path received
   * after one of them that acts on an overlapping path runs once it is done
   * (see dispatch). The CLOSEs among them the channel's end lets finish (see
   * fileCloses).
   */
  private readonly pathTurns = new LazySet<PathTurn>();
  /** Bytes of the budget this channel holds. */
  private held = 0;
  private initialized = false;
  private closed = false;
  /** Replies not yet taken by the transport, whether still in the outbox or held by ssh2. */
  private unsent = 0;
  /** Replies not yet handed to ssh2 (see flush). */
  private readonly outbox: Buffer[] = [];
  /** Those of the unsent replies that are owed (see answered()), with their numbers. */
  private readonly owedReplies = new LazyMap<Buffer, number>();
  /** Bytes handed to ssh2 in this turn of the event loop. */
  private sentThisTurn = 0;
  private turnEnding = false;
  /**
   * Requests on a file's handle (a transfer's WRITEs, READs, its CLOSE...)
   * whose reply the transport has not taken yet, by number, in the order
   * numbered (see answered()).
   */
  private readonly owed = new LazySet<number>();
  /** The number of the next request owed a reply. */
  private owedNext = 0;
  /** Waiting for the replies owed to the requests numbered below `upTo`. */
  private owedWaiters: { upTo: number; resolve: () => void }[] = [];
  /** Woken whenever a request ends, a reply is taken, or the channel closes (see until()). */
  private progressWaiters: (() => void)[] = [];
  /** Closing the handles and the session, once begun (see endSession). */
  private sessionEnd: Promise<void> | null = null;
  private readonly unwatch: () => void;
  private ended!: () => void;
  /** Settles once the session is closed and its end recorded: a server stopping waits for it. */
  readonly done = new Promise<void>((resolve) => (this.ended = resolve));

  constructor(
    private readonly stream: Duplex,
    private readonly session: Session,
    private readonly log: Logger,
    private readonly options: ChannelOptions,
  ) {
    this.handles = new HandleTable(options.maxHandles, session.openHandles);
    this.ctx = { session, handles: this.handles, maxHandles: options.maxHandles, symlinkTargetFirst: options.symlinkTargetFirst };
    this.unwatch = options.budget.watch(() => this.pump());
    stream.on('data', (chunk: Buffer) => {
      options.onActivity();
      this.receive(chunk);
    });
    stream.on('error', (err: Error) => this.log.debug({ err: err.message }, 'sftp channel error'));
    const closed = () => {
      // Before the outbox is dropped: whether every reply was taken (see HandleTable.closeAll), those of READs still
      // running included. Not counted, a download told its end by an early READ, the rest still being read when
      // the channel closed, was recorded ok without a byte of theirs sent (found by a review).
      const delivered = this.unsent === 0 && this.readsInFlight === 0;
      this.outbox.length = 0;
      this.shutdown('channel closed', delivered);
    };
    stream.on('close', closed);
    if (options.gone.aborted) closed();
    else options.gone.addEventListener('abort', closed, { once: true });
    stream.on('end', () => this.finishInput().catch((err: unknown) => this.failed(err)));
  }

  /**
   * The client's EOF: it sends nothing more, but what it sent before is
   * answered as ever, started in the order received and, on one handle, run
   * in that order (a client that pipes its requests, `sftp -b` or a script,
   * sends EOF right after them: its last WRITEs and the CLOSE that commits
   * them among them). The channel is half-closed, so replies
   * still go out. Once every request has its reply, the handles still open
   * can no longer be named: those transfers were abandoned, and are aborted
   * with the session's end. Then the replies go out as the window lets them,
   * still counted in the budget, and our side ends too, or OpenSSH waits for it.
   *
   * Before (found by a review), the EOF closed everything at once: requests
   * not yet answered were dropped, and an upload whose WRITEs and CLOSE were
   * still queued was aborted and recorded so, though the client had been told
   * Success for some of its writes.
   *
   * Bounds as before: no request is read after the EOF, so the work left is
   * what the in-flight cap and the budget let in. A client that then never
   * reads its replies holds their bytes of the budget (and its session while
   * requests wait behind them), as one that sent no EOF, until it closes the
   * channel or the idle timeout ends the connection; the channel's close
   * aborts at once, as ever (shutdown).
   */
  private async finishInput(): Promise<void> {
    // The requests framed (the bytes of one the EOF cut short are no request), started and answered.
    await this.until(() => this.framed === null && this.inFlight === 0);
    if (this.closed) return;
    // One that fails (a bug) is logged, and the client still gets its exit and EOF rather than wait for ever.
    await this.endSession('client finished', this.unsent === 0).catch((err: unknown) => this.failed(err));
    await this.until(() => this.unsent === 0);
    if (this.closed) return;
    this.stop();
    this.options.exit(0);
    this.stream.end();
  }

  /** Resolves once `done()` holds, or the channel closed. */
  private async until(done: () => boolean): Promise<void> {
    while (!this.closed && !done()) await new Promise<void>((resolve) => this.progressWaiters.push(resolve));
  }

  private receive(chunk: Buffer): void {
    // Chunks ssh2 had already buffered still flow after a violation destroyed the stream.
    if (this.closed) return;
    this.framer.push(chunk);
    this.pump();
  }

  /** Start what the limits allow; read on only once no whole request waits. */
  private pump(): void {
    while (!this.closed) {
      try {
        this.framed ??= this.framer.next();
      } catch (err) {
        return this.violation(String(err));
      }
      const packet = this.framed;
      if (packet === null) break;
      if (this.initialized) {
        if (this.inFlight >= this.options.maxInFlight) break;
        // Its own bytes, what it works with, and what holding it costs: at least what its reply will.
        const cost = packet.size + workingBytes(packet) + HELD_OVERHEAD;
        if (!this.options.budget.tryTake(cost, this.held === 0)) break;
        this.held += cost;
        this.framed = null;
        this.dispatch(packet, cost);
      } else {
        this.framed = null;
        this.init(packet);
      }
    }
    if (this.closed) return;
    if (this.framed !== null) this.stream.pause();
    else this.stream.resume();
  }

  private init(packet: Packet): void {
    // Anything before INIT ends the session, as OpenSSH's server does.
    if (packet.type !== FXP.INIT) return this.violation('request before INIT');
    this.initialized = true;
    const version = new Writer(FXP.VERSION).uint32(3);
    for (const [name, data] of advertisedExtensions()) version.string(name).string(data);
    this.send(version.finish());
  }

  /**
   * Settles once the requests on a file's handle started so far have their
   * replies taken by the transport, or the channel closed: the server ending
   * the session after a transfer lets the client hear how its WRITEs and its
   * CLOSE went first. Nothing else is waited for: before (found by a review),
   * every request was, so a checksum still being read, or replies to a
   * listing that the client never took, held a stopping server's connection
   * until the drain's deadline, though the transfers had ended long before
   * and an idle session is ended at once. A client that does not take a
   * transfer's last reply still holds it, as it holds its transfer: until
   * the deadline.
   */
  answered(): Promise<void> {
    const upTo = this.owedNext;
    if (!this.owes(upTo)) return Promise.resolve();
    return new Promise((resolve) => this.owedWaiters.push({ upTo, resolve }));
  }

  /** Whether a reply owed to a request numbered below `upTo` is still to be taken (the set keeps them in order). */
  private owes(upTo: number): boolean {
    const first = this.owed.values().next();
    return !this.closed && !first.done && first.value < upTo;
  }

  /** The reply owed to request `n` is taken, or never will be. */
  private settle(n: number): void {
    this.owed.delete(n);
    if (this.owedWaiters.length === 0) return;
    const still = [];
    for (const w of this.owedWaiters) {
      if (this.owes(w.upTo)) still.push(w);
      else w.resolve();
    }
    this.owedWaiters = still;
  }

  private wakeProgress(): void {
    for (const resolve of this.progressWaiters.splice(0)) resolve();
  }

  private dispatch(packet: Packet, cost: number): void {
    if (packet.type === FXP.INIT || packet.id === null) return this.violation('INIT twice');
    const id = packet.id;
    const key = handleOrderKey(packet);
    // A READ's handle: it is not ordered on it (READs run side by side), but waits for what is (below).
    const reads = packet.type === FXP.READ ? readHandle(packet) : null;
    // A reply owed on a file's handle (see answered()).
    const fileHandle = key ?? reads;
    const owed = fileHandle !== null && this.handles.holdsFile(fileHandle) ? this.owe() : null;
    this.inFlight++;
    if (reads !== null) this.readsInFlight++;
    // Not ordered on a handle, and not a READ: a request by path, which must find what a file's CLOSE sent
    // before it did (an atomic upload's name), and what a change by path sent before it did (a rename's
    // name), as a server running one request at a time would have it. Found with sshfs: its close(2) does
    // not wait for the CLOSE's reply, and an open(2) of the file just written, sent right behind it, ran
    // beside the CLOSE, found no file yet, and failed with ENOENT. And with gvfs's FUSE mount: `echo b > f`
    // over an existing f ends with gvfs's RENAME of its temporary file onto f after close(2) has returned,
    // and the LSTAT of the next open(2) of f, sent right behind that RENAME, missed f (`cat f`: ENOENT).
    //
    // Only after those acting on a path that overlaps one of its own: the same path, or one above the
    // other (an RMDIR of d after the commit of d/f, a look at d/f after a RENAME of d), as the session
    // resolves the client's strings (Session.resolve: from the home, `.`, `..`, repeated slashes). The
    // drafts ask no more ("requests relating to the same file in the order in which they are received",
    // filexfer-02 6.1), and waiting for all of them held every OPEN of a client uploading several files at
    // once behind the others' OPENs and CLOSEs. A CLOSE acts where its handle was opened, or on every path
    // once a RENAME sent since may have moved it (HandleTable.moved, renaming()). Strings only, as this
    // layer knows no file system: a name that reaches the same file another way (l/x where the symlink l
    // leads to d, a second hard link) is not ordered with d/x, where OpenSSH, one request at a time,
    // orders everything; a client naming one file two ways in one pipeline and counting on their order
    // sees what came before. sshfs and gvfs name a file one way (by default the kernel follows a mount's
    // symlinks itself and looks up their targets), and OpenSSH's sftp keeps the directory REALPATH gave
    // it. Nor is what a quota counts a path: beside another file's CLOSE or REMOVE, an upload may find the
    // room as it was before them, as it may on a second connection of the same client.
    const byPath = key === null && packet.type !== FXP.READ;
    const { names, moves } = byPath ? pathsNamed(this.ctx, packet) : { names: null, moves: null };
    const earlier = byPath ? [...this.pathTurns] : [];
    // Taken now: the CLOSE may take its handle out of the table before ordered() returns.
    const closing = packet.type === FXP.CLOSE && key !== null && owed !== null ? { names: this.handles.namesAt(key) } : null;
    const act = () => this.handle(packet.type, id, packet);
    const run = moves === null ? act : () => this.renaming(moves, act);
    // A READ runs after the requests ordered on its handle received before it (WRITEs, a resize, a CLOSE),
    // as on a server running one request at a time: on a handle opened READ|WRITE it reads what they
    // left. sshfs does not wait for a WRITE's reply before write(2) returns (sync_write is off by default),
    // so a read(2) of the same bytes right after sends its READ while the WRITE may still run: run beside
    // it, under an upload limit, such a READ found nothing there yet. READs still run side by side.
    const before = reads === null ? undefined : this.lastOrdered.get(reads);
    let start = run;
    if (before !== undefined) start = () => Promise.allSettled([before]).then(run);
    else if (this.unanswered(earlier, names).length > 0) start = () => this.after(earlier, names).then(run);
    const reply = this.ordered(key, packet, start);
    if (key !== null) {
      // A request by name acting on this file's transfer comes after it (Session.namedOrStaged).
      this.handles.fileAt(key)?.took(reply);
      this.lastOrdered.set(key, reply);
      void reply.then(() => {
        if (this.lastOrdered.get(key) === reply) this.lastOrdered.delete(key);
      });
    }
    if (closing !== null) this.turn(closing.names, reply, true);
    if (byPath && changesByPath(packet)) this.turn(names, reply, false);
    const previous = reads === null ? undefined : this.readReplies.get(reads);
    const leaving = previous === undefined ? reply : Promise.all([reply, previous]).then(([r]) => r);
    if (reads !== null) {
      const sent = leaving.then(() => undefined);
      this.readReplies.set(reads, sent);
      void sent.then(() => {
        if (this.readReplies.get(reads) === sent) this.readReplies.delete(reads);
      });
    }
    void leaving.then((reply) => {
      this.inFlight--;
      if (reads !== null) this.readsInFlight--;
      // The reply takes the place of what the request held.
      this.send(reply, owed);
      this.release(cost);
      this.wakeProgress();
    });
  }

  /** The CLOSEs of files received and not yet answered. */
  private fileCloses(): Promise<Buffer>[] {
    return [...this.pathTurns].filter((t) => t.closes).map((t) => t.reply);
  }

  /** `reply` is a CLOSE's or a change's acting on `names`: a later request by path acting on an overlapping one waits for it. */
  private turn(names: string[] | null, reply: Promise<Buffer>, closes: boolean): void {
    const turn = { names, closes, reply };
    this.pathTurns.add(turn);
    void reply.then(() => this.pathTurns.delete(turn));
  }

  /** Of `earlier`, the turns not yet answered acting on a path that overlaps one of `names`. */
  private unanswered(earlier: readonly PathTurn[], names: readonly string[] | null): Promise<Buffer>[] {
    return earlier.filter((t) => this.pathTurns.has(t) && overlapping(t.names, names)).map((t) => t.reply);
  }

  /**
   * Settles once no turn of `earlier` acting on a path that overlaps one of
   * `names` is unanswered, looked at again after each wait: a RENAME among
   * them, run meanwhile, may have made a CLOSE received after it act on
   * every path (see renaming()).
   */
  private async after(earlier: readonly PathTurn[], names: readonly string[] | null): Promise<void> {
    for (let waits = this.unanswered(earlier, names); waits.length > 0; waits = this.unanswered(earlier, names)) await Promise.allSettled(waits);
  }

  /**
   * A rename's run, from `from`. A file's CLOSE commits it where its
   * directory is by then (the session holds the directory, not its name):
   * the open files and directories at or below `from` (HandleTable.moved),
   * and the CLOSEs not yet answered acting there, act on every path from
   * then on, for the requests by path after them to wait on. As it starts,
   * the requests it waited for done (the OPENs for writing there among
   * them), and as it ends, for a file opened for reading meanwhile (a look,
   * which it does not wait for). A CLOSE received before the rename is among
   * those it waited for; one received after it runs beside it (CLOSEs wait
   * only on their handle), and the requests by path after that CLOSE look
   * again once the rename is done (after()). A change received after it and
   * acting there waits for it, and acts on the names as the rename left them.
   */
  private async renaming(from: string, run: () => Promise<Buffer>): Promise<Buffer> {
    const follow = () => {
      this.handles.moved(from);
      for (const t of this.pathTurns) if (t.closes && t.names?.some((name) => isWithin(name, from))) t.names = null;
    };
    follow();
    try {
      return await run();
    } finally {
      follow();
    }
  }

  /** A reply owed (see answered()): its number, settled by its write's callback or the channel's close. */
  private owe(): number {
    const n = this.owedNext++;
    this.owed.add(n);
    return n;
  }

  /**
   * Requests that write through one handle (WRITE, copy-data), and those
   * acting on it after its writes (CLOSE, FSETSTAT, ...: RequestSpec.orderedOn),
   * run one after another in the order received, as OpenSSH's server runs
   * every request: an append (OpenSSH's reput) lands wherever the file ends
   * when the system runs it, so two in flight could swap, and a CLOSE run
   * beside the WRITEs before it would commit the file without them.
   * Everything else runs at once.
   */
  private ordered(key: string | null, packet: Packet, run: () => Promise<Buffer>): Promise<Buffer> {
    if (key === null) return run();
    return new Promise((done) => {
      const item = { packet, run, done };
      const queue = this.writes.get(key);
      if (queue) return void queue.push(item);
      const fresh = [item];
      this.writes.set(key, fresh);
      void this.drain(key, fresh);
    });
  }

  /**
   * Run one handle's queue. The WRITEs that waited together, each where the
   * one before it ends (every client's pipeline of one file), go to the file
   * as one write: one trip to the thread pool instead of one each.
   */
  private async drain(key: string, queue: Queued[]): Promise<void> {
    while (queue.length > 0) {
      const writes = queue.map((q) => writeRequest(q.packet));
      const n = leadingRun(writes, MAX_WRITE_RUN);
      const batch = queue.splice(0, Math.max(n, 1));
      if (n < 2) {
        const [only] = batch as [Queued];
        only.done(await only.run());
        continue;
      }
      const run = writes.slice(0, n) as WriteRequest[];
      const replies = await this.writeRun(run);
      batch.forEach((q, i) => q.done(replies[i] as Buffer));
    }
    this.writes.delete(key);
  }

  /** Consecutive WRITEs through one handle as one write; each gets its own reply, all the same. */
  private async writeRun(run: readonly WriteRequest[]): Promise<Buffer[]> {
    const first = run[0] as WriteRequest;
    if (this.log.isLevelEnabled('debug')) this.log.debug({ request: 'write', writes: true, ids: run.map((w) => w.id) }, 'sftp requests');
    try {
      await writeThrough(this.ctx, first.handle, first.offset, run.map((w) => w.data));
      return run.map((w) => ok(w.id));
    } catch (err) {
      return run.map((w) => this.failure(w.id, err, 'write'));
    }
  }

  private async handle(type: number, id: number, packet: Packet): Promise<Buffer> {
    let request: string | number = type;
    try {
      const spec = specFor(type, packet.body);
      if (!spec) return statusPacket(id, STATUS.OP_UNSUPPORTED, type === FXP.EXTENDED ? 'Unsupported extension' : 'Unsupported request');
      request = spec.name;
      if (this.log.isLevelEnabled('debug')) this.log.debug({ request, writes: spec.writes, id }, 'sftp request');
      return await spec.run(this.ctx, id, packet.body);
    } catch (err) {
      return this.failure(id, err, request);
    }
  }

  /** The STATUS reply for a request that failed. */
  private failure(id: number, err: unknown, request: string | number): Buffer {
    if (err instanceof BadMessage) return statusPacket(id, STATUS.BAD_MESSAGE, 'Malformed request');
    // The session types every failure it knows: anything else is a bug of ours.
    if (!(err instanceof SluiceError)) this.log.error({ err, request }, 'sftp handler failed');
    const { code, message } = statusFor(err instanceof SluiceError ? err : new SluiceError('failure'));
    return statusPacket(id, code, message);
  }

  private send(reply: Buffer, owed: number | null = null): void {
    if (this.closed) return void (owed !== null && this.settle(owed));
    this.options.budget.take(replyCost(reply));
    this.held += replyCost(reply);
    this.unsent++;
    this.outbox.push(reply);
    if (owed !== null) this.owedReplies.set(reply, owed);
    this.flush();
  }

  /**
   * Replies go to ssh2 one turn's worth at a time, and only while ssh2 holds
   * none back for the client's window. ssh2 sends whatever it holds the moment
   * a WINDOW_ADJUST opens the window, packing, padding and encrypting it all
   * in that one turn of the event loop: with OpenSSH's 2 MiB window that held
   * the loop for milliseconds, and every other session waited.
   */
  private flush(): void {
    while (this.outbox.length > 0 && !this.closed) {
      if (this.stream.writableLength > 0) return; // the window is shut: that reply's callback flushes on
      if (this.sentThisTurn >= TURN_BYTES) return this.nextTurn();
      const reply = this.outbox.shift() as Buffer;
      if (this.sentThisTurn === 0) this.nextTurn();
      this.sentThisTurn += reply.length;
      // The callback comes once ssh2 has handed the reply to the transport, i.e. the client's window took it:
      // ssh2 copied it into its packets, so a READ reply's buffer may serve the next READ.
      this.stream.write(reply, (err) => {
        this.unsent--;
        this.release(replyCost(reply));
        const owed = this.owedReplies.get(reply);
        if (owed !== undefined) {
          this.owedReplies.delete(reply);
          this.settle(owed);
        }
        if (!err) recycleReply(reply);
        this.wakeProgress();
        this.flush();
      });
    }
  }

  /**
   * A fresh budget, and the rest of the outbox, in the next turn of the loop:
   * an immediate set from an immediate runs after that turn's timers and I/O.
   */
  private nextTurn(): void {
    if (this.turnEnding) return;
    this.turnEnding = true;
    setImmediate(() =>
      setImmediate(() => {
        this.turnEnding = false;
        this.sentThisTurn = 0;
        this.flush();
      }),
    );
  }

  private release(n: number): void {
    // After shutdown everything is given back at once (see stop()).
    if (this.closed) return;
    this.held -= n;
    this.options.budget.give(n);
  }

  private violation(reason: string): void {
    this.log.warn({ reason }, 'sftp protocol violation; closing');
    this.shutdown(reason);
    this.stream.destroy();
  }

  /** The channel is gone (closed by the client, dropped, or a violation): everything stops at once. */
  private shutdown(reason: string, delivered = false): void {
    this.stop();
    this.endSession(reason, delivered).catch((err: unknown) => this.failed(err));
  }

  /**
   * A session's end that failed (a bug): said, not left to reject unheard,
   * which ends the whole process and every other session in it (found by a
   * review: an upload's end that threw did).
   */
  private failed(err: unknown): void {
    this.log.error({ err }, 'ending the SFTP session');
  }

  /** Nothing more is started or sent, and the channel's share of the budget goes back (see giveBack()). */
  private stop(): void {
    if (this.closed) return;
    this.closed = true;
    this.framed = null;
    this.unwatch();
    // Replies still queued are dropped with the channel (ssh2 never completes writes on a closed channel);
    // after the client's EOF, stop() comes only once they were all taken (finishInput).
    if (this.fileCloses().length === 0) this.giveBack();
    // Nothing more is sent: the replies owed never will be.
    this.owed.clear();
    this.owedReplies.clear();
    for (const w of this.owedWaiters.splice(0)) w.resolve();
    this.wakeProgress();
  }

  /**
   * What the channel holds of the connection's budget goes back, unless
   * CLOSEs are let finish (endSession): the WRITEs ordered before them still
   * hold their bytes until then. Given back at the channel's close, it let
   * a new channel of the connection fill it again at once: a user whose
   * WRITEs a rate held back sent them and a CLOSE, then closed the channel,
   * again and again on one connection, and the server held a budget's worth
   * for each channel closed in the last 2 s (found by a review).
   */
  private giveBack(): void {
    this.options.budget.give(this.held);
    this.held = 0;
  }

  /**
   * Once: abort the transfers still open (recorded as such), close listings
   * and the session. A CLOSE received before the channel went first ends its
   * transfer as the client asked, with the requests ordered before it on its
   * handle (its WRITEs): a client that sends its last WRITEs and the CLOSE,
   * then closes the channel without waiting for the reply, had that upload
   * aborted by the race, though all of it had come (found by a test written
   * while looking into lftp's mirror, which drops its connections so; what
   * it loses is the CLOSE itself, see HandleTable.closeAll). Bounded: a CLOSE
   * held longer (its READs waiting on a rate limit) is aborted with the rest.
   */
  private endSession(reason: string, delivered: boolean): Promise<void> {
    this.sessionEnd ??= (async () => {
      try {
        const closes = this.fileCloses();
        if (closes.length > 0) {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([Promise.allSettled(closes), new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS)))]);
          clearTimeout(timer);
        }
        if (this.closed) this.giveBack();
        for (const err of await this.handles.closeAll(reason, delivered)) this.failed(err);
        await this.session.close();
      } finally {
        this.ended();
      }
    })();
    return this.sessionEnd;
  }
}
