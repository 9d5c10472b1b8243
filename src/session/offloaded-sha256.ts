import { createHash, type Hash } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * Bytes a stream holds before it hands them to the hashing thread: a file up
 * to this size is hashed on the event loop at its end (a few hundred µs at
 * most), which costs a small file less than two messages to a thread would.
 */
const BATCH = 256 * 1024;
/** Bytes one stream may have handed to the thread and not yet had hashed; past it, caughtUp() waits. */
const MAX_BEHIND = 16 * BATCH;
/**
 * The same for all streams of the process together: memory does not grow
 * with the number of transfers, each waits its turn (32 MiB are about 20 ms
 * of the thread's work).
 */
const MAX_TOTAL_BEHIND = 8 * MAX_BEHIND;
/** Batches kept for reuse at most: what one stream at full speed has in flight. */
const MAX_SPARE = MAX_BEHIND / BATCH + 1;

/** What the event loop sends the hashing thread: bytes (moved, not copied), the end, or the stream given up. */
export interface ToThread {
  id: number;
  bytes?: ArrayBuffer;
  length: number;
  end?: boolean;
  drop?: boolean;
}

/** What it answers: how many bytes it hashed (and their memory, back for the next batch), or the digest of a stream that ended. */
export type FromThread = { id: number; hashed: number; bytes: ArrayBuffer; digest?: never } | { id: number; digest: string; hashed?: never };

/**
 * The thread's whole program: one SHA-256 per stream id, fed in the order the
 * event loop sent the bytes; it knows no file, session or secret. Given as
 * source, not a module file, so that it starts alike from the build and from
 * the TypeScript the tests run (a worker gets no TypeScript loader on Node 20).
 */
const THREAD_SOURCE = `
const { createHash } = require('node:crypto');
const { parentPort } = require('node:worker_threads');
const hashes = new Map();
parentPort.on('message', (m) => {
  if (m.drop) return void hashes.delete(m.id);
  let hash = hashes.get(m.id);
  if (!hash) hashes.set(m.id, (hash = createHash('sha256')));
  if (m.bytes) {
    hash.update(new Uint8Array(m.bytes, 0, m.length));
    parentPort.postMessage({ id: m.id, hashed: m.length, bytes: m.bytes }, [m.bytes]);
  }
  if (m.end) {
    hashes.delete(m.id);
    parentPort.postMessage({ id: m.id, digest: hash.digest('hex') });
  }
});
`;

/**
 * One thread per process hashes what every transfer's SHA-256 (the audit
 * record's) needs past its first batch. On the event loop, SHA-256 took
 * 0.5-0.7 ms of CPU per MiB (SHA-NI), the largest single cost of a large
 * transfer and a stall for every other session meanwhile. On the thread, the
 * loop only copies the bytes into the batch it hands over. Measured on a
 * 1 GiB FTP transfer (curl, 2-core VM): the loop's CPU per MiB fell from
 * 1.5 to 1.0 ms up and from 1.3 to 0.75 ms down; the process spends about
 * 0.1 ms per MiB more in all, and the thread takes about 15 MiB of memory
 * once. It starts at the first large transfer and keeps the process alive
 * only while something waits on it (a digest, or a stream caught up with).
 */
class HashingThread {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly streams = new Map<number, Sha256Stream>();
  /** Bytes handed to the thread and not yet hashed, of every stream (a dropped one's too, until the thread has passed them). */
  total = 0;
  /** Streams whose caughtUp() is waited on, and digests awaited: while any, the thread keeps the process alive. */
  private readonly blocked = new Set<Sha256Stream>();
  private digests = 0;
  private reffed = false;
  /**
   * Batches the thread has hashed and handed back. Reused, they keep memory
   * flat: each one handed over and left to the thread's collector instead
   * grew the process by 80 MiB over a few GiB (it rarely collects).
   */
  private readonly spare: ArrayBuffer[] = [];

  /** Memory for a batch: one handed back, or new (with an ArrayBuffer of its own, so that it can be moved). */
  batch(): Buffer {
    const spare = this.spare.pop();
    return spare ? Buffer.from(spare) : Buffer.allocUnsafeSlow(BATCH);
  }

  /** A stream's id on the thread; throws when no thread can be started. */
  open(stream: Sha256Stream): number {
    if (!this.worker) this.start();
    const id = this.nextId++;
    this.streams.set(id, stream);
    return id;
  }

  send(message: ToThread): void {
    if (message.drop) this.streams.delete(message.id);
    if (!this.worker) return;
    if (message.bytes) this.total += message.length;
    this.worker.postMessage(message, message.bytes ? [message.bytes] : []);
  }

  /** Wait for `stream` to be within its share again (hashed() wakes it); digest: one more digest awaited. */
  hold(what: Sha256Stream | 'digest'): void {
    if (what === 'digest') this.digests++;
    else this.blocked.add(what);
    this.updateRef();
  }

  /** What hold() said is over. */
  unhold(what: Sha256Stream | 'digest'): void {
    if (what === 'digest') this.digests--;
    else this.blocked.delete(what);
    this.updateRef();
  }

  private updateRef(): void {
    const want = this.digests > 0 || this.blocked.size > 0;
    if (want === this.reffed || !this.worker) return;
    this.reffed = want;
    if (want) this.worker.ref();
    else this.worker.unref();
  }

  private start(): void {
    // No flags of the server's (a profiler, heap sizes, a loader) for a thread that only hashes,
    // and a small heap: it allocates a message per batch, nothing else.
    const worker = new Worker(THREAD_SOURCE, { eval: true, execArgv: [], resourceLimits: { maxYoungGenerationSizeMb: 1, maxOldGenerationSizeMb: 16 } });
    worker.on('message', (m: FromThread) => {
      const stream = this.streams.get(m.id);
      if (m.digest !== undefined) {
        this.streams.delete(m.id);
        return stream?.ended(m.digest);
      }
      this.total -= m.hashed;
      if (m.bytes.byteLength === BATCH && this.spare.length < MAX_SPARE) this.spare.push(m.bytes);
      stream?.hashed(m.hashed);
      for (const s of this.blocked) s.wakeIfWithin();
    });
    // A thread that fails loses the streams it held (their digests are null, never wrong); the next large transfer starts another.
    const lost = (why: unknown): void => {
      if (this.worker !== worker) return;
      const open = this.streams.size;
      process.emitWarning(`the hashing thread stopped (${why instanceof Error ? why.message : `exit ${String(why)}`}): ${open} transfer(s) will be recorded without a SHA-256`, 'SluiceHashWarning');
      this.worker = null;
      this.reffed = false;
      this.total = 0;
      const streams = [...this.streams.values(), ...this.blocked];
      this.streams.clear();
      for (const s of streams) s.ended(null);
    };
    worker.on('error', lost);
    worker.on('exit', lost);
    // After the listeners: adding a 'message' listener refs the thread again.
    worker.unref();
    this.worker = worker;
  }
}

const thread = new HashingThread();

/**
 * SHA-256 of a sequence of bytes, computed off the event loop once the
 * sequence outgrows one batch. update() copies what it is given (the caller
 * may reuse its buffer, as SFTP's recycled replies do); digest() resolves
 * once the thread has hashed everything, or null if the thread was lost.
 * An unfinished stream holds at most a batch and its share of the thread's
 * queue; drop() it when its digest is no longer wanted.
 */
export class Sha256Stream {
  /** Copies of the first bytes, hashed at the end unless they outgrow a batch. */
  private held: Buffer[] = [];
  private heldBytes = 0;
  /** The stream's id on the thread once it outgrew a batch; 0 before. */
  private id = 0;
  /** Hashed here, on the event loop: asked for (see the constructor), or no thread could be started. */
  private local: Hash | null;
  private batch: Buffer | null = null;
  private batchUsed = 0;
  /** Bytes of this stream handed to the thread and not yet hashed. */
  private behind = 0;
  private waiters: (() => void)[] = [];
  private result: ((digest: string | null) => void) | null = null;
  private done: Promise<string | null> | null = null;

  /** `offload` false: hashed on the event loop as the bytes pass, never copied. */
  constructor(offload = true) {
    this.local = offload ? null : createHash('sha256');
  }

  update(data: Uint8Array): void {
    if (this.done) return;
    if (this.local) return void this.local.update(data);
    if (this.id === 0) {
      if (this.heldBytes + data.length <= BATCH) {
        this.held.push(Buffer.from(data));
        this.heldBytes += data.length;
        return;
      }
      this.offload();
      if (this.local) return void (this.local as Hash).update(data);
    }
    for (let at = 0; at < data.length; ) {
      this.batch ??= thread.batch();
      const n = Math.min(data.length - at, BATCH - this.batchUsed);
      this.batch.set(data.subarray(at, at + n), this.batchUsed);
      this.batchUsed += n;
      at += n;
      if (this.batchUsed === BATCH) this.sendBatch();
    }
  }

  /**
   * Null while the thread keeps up with this stream and with all of them
   * together; else a promise that resolves once it has caught up by half.
   */
  caughtUp(): Promise<void> | null {
    if (this.done || (this.behind <= MAX_BEHIND && thread.total <= MAX_TOTAL_BEHIND)) return null;
    if (this.waiters.length === 0) thread.hold(this);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Once; later updates are ignored. */
  digest(): Promise<string | null> {
    if (this.done) return this.done;
    if (this.local) return (this.done = Promise.resolve(this.local.digest('hex')));
    if (this.id === 0) {
      const hash = createHash('sha256');
      for (const chunk of this.held) hash.update(chunk);
      this.held = [];
      return (this.done = Promise.resolve(hash.digest('hex')));
    }
    thread.hold('digest');
    this.done = new Promise((resolve) => (this.result = resolve));
    this.sendBatch(true);
    this.release();
    return this.done;
  }

  /** The bytes are not what the digest would describe: given up, and the thread told. */
  drop(): void {
    if (this.id !== 0 && !this.done) thread.send({ id: this.id, length: 0, drop: true });
    this.done ??= Promise.resolve(null);
    this.held = [];
    this.batch = null;
    this.behind = 0;
    this.release();
  }

  /** The thread hashed `n` more bytes of this stream. */
  hashed(n: number): void {
    this.behind -= n;
  }

  /** Waiters go on once this stream and all together are within half their bounds (or the stream is done). */
  wakeIfWithin(): void {
    if (this.done || (this.behind <= MAX_BEHIND / 2 && thread.total <= MAX_TOTAL_BEHIND / 2)) this.release();
  }

  /** The thread's digest, or null when it was lost. */
  ended(digest: string | null): void {
    this.done ??= Promise.resolve(null);
    if (this.result) {
      this.result(digest);
      this.result = null;
      thread.unhold('digest');
    }
    this.behind = 0;
    this.release();
  }

  private offload(): void {
    try {
      this.id = thread.open(this);
    } catch {
      this.local = createHash('sha256');
      for (const chunk of this.held) this.local.update(chunk);
      this.held = [];
      return;
    }
    const first = Buffer.allocUnsafeSlow(this.heldBytes);
    let at = 0;
    for (const chunk of this.held) at += chunk.copy(first, at);
    this.held = [];
    if (at > 0) this.post(first, at, false);
  }

  private sendBatch(end = false): void {
    const batch = this.batch;
    this.batch = null;
    if (batch || end) this.post(batch, this.batchUsed, end);
    this.batchUsed = 0;
  }

  private post(bytes: Buffer | null, length: number, end: boolean): void {
    if (bytes && length > 0) this.behind += length;
    // The batch's memory is moved to the thread, not copied: it has an ArrayBuffer of its own.
    thread.send({ id: this.id, length, ...(bytes && length > 0 ? { bytes: bytes.buffer as ArrayBuffer } : {}), ...(end ? { end } : {}) });
  }

  private release(): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    thread.unhold(this);
    for (const w of waiters) w();
  }
}
