import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the thread looks at the WAL. */
const LOOK_MS = 1000;
/** Frames waiting in the WAL that make the thread checkpoint at once: SQLite's own wal_autocheckpoint. */
const FRAMES = 1000;
/** Fewer frames are moved once they have waited this long. */
const AGE_MS = 5000;
/** How long after the thread was lost another is started. */
const RESTART_MS = 1000;
/** How long a stop waits for the last checkpoint. */
const STOP_MS = 5000;

/**
 * The thread's whole program: its own connection to the database file, and a
 * PASSIVE checkpoint (which waits for no reader or writer) when the WAL holds
 * FRAMES frames not yet in the database file, or fewer that have waited
 * AGE_MS. Not at every look: the first commit after a checkpoint emptied the
 * WAL starts it over and fsyncs its header, on that commit's event loop.
 * What waits is read from the WAL-index (the -shm file; SQLite's file format,
 * native byte order): its header's mxFrame (offset 16) against the
 * checkpoint's nBackfill (offset 96). Unread, only the age counts. Given as
 * source, as the hashing thread is (offloaded-sha256.ts): a worker gets no
 * TypeScript loader on Node 20.
 */
const THREAD_SOURCE = `
const { closeSync, openSync, readSync } = require('node:fs');
const { endianness } = require('node:os');
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
const read32 = endianness() === 'LE' ? (b, at) => b.readUInt32LE(at) : (b, at) => b.readUInt32BE(at);
const head = Buffer.alloc(100);
let shm = null;
const waiting = () => {
  try {
    shm ??= openSync(workerData.file + '-shm', 'r');
    if (readSync(shm, head, 0, 100, 0) < 100) return null;
    return read32(head, 16) - read32(head, 96);
  } catch {
    return null;
  }
};
let last = Date.now();
const checkpoint = () => {
  last = Date.now();
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch (err) {
    parentPort.postMessage({ error: String((err && err.message) || err) });
  }
};
const timer = setInterval(() => {
  const frames = waiting();
  if (frames === 0) return void (last = Date.now());
  if ((frames !== null && frames >= workerData.frames) || Date.now() - last >= workerData.ageMs) checkpoint();
}, workerData.lookMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  checkpoint();
  db.close();
  if (shm !== null) closeSync(shm);
  parentPort.close();
});
`;

/**
 * SQLite checkpoints on a thread of their own. A connection left to itself
 * checkpoints when a commit takes the WAL past 1,000 pages, inside that
 * commit: on a serving process's event loop, with the fsyncs of the WAL and
 * of the database file (13 ms of a worker's loop in one strace here, and
 * every session of the process waits meanwhile). Only the fsync of a fresh
 * WAL's header stays with the commit that starts it (under 6 ms in the same
 * strace), at most every AGE_MS. Serving connections turn
 * that off (`wal_autocheckpoint = 0`, SqliteStore.leaveCheckpoints) and the
 * process that coordinates (the primary, or the one process) runs this
 * thread; its checkpoints take no lock a commit needs. A thread that fails is
 * started again after a second; what it could not move waits in the WAL
 * meanwhile, as it would behind a long reader.
 */
export class Checkpointer {
  private worker: Worker | null = null;
  private restart: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(
    private readonly file: string,
    private readonly onError: (message: string) => void,
  ) {
    this.start();
  }

  private start(): void {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { driver, file: this.file, lookMs: LOOK_MS, frames: FRAMES, ageMs: AGE_MS } });
    worker.on('message', (m: { error?: string }) => {
      if (m.error) this.onError(`checkpoint failed: ${m.error}`);
    });
    worker.on('error', (err) => this.onError(`checkpoint thread failed: ${err.message}`));
    worker.on('exit', () => {
      if (this.worker !== worker) return;
      this.worker = null;
      if (this.stopped) return;
      this.onError('checkpoint thread ended: starting another');
      this.restart = setTimeout(() => {
        this.restart = null;
        if (!this.stopped) this.start();
      }, RESTART_MS);
      this.restart.unref();
    });
    worker.unref();
    this.worker = worker;
  }

  /** A last checkpoint, then the thread ends. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restart) clearTimeout(this.restart);
    const worker = this.worker;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
    worker.postMessage('stop');
    // A thread stuck in a checkpoint (a disk that hangs) does not hold the stop: SQLite's WAL keeps what it had not moved.
    const stuck = setTimeout(() => void worker.terminate(), STOP_MS);
    await exited;
    clearTimeout(stuck);
  }
}
