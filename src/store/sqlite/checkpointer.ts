import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the thread checkpoints. */
const EVERY_MS = 5000;
/**
 * The WAL's length (frames since it last started over) past which the thread
 * follows its PASSIVE checkpoint with a RESTART one. A WAL starts over only
 * when a writer finds it wholly checkpointed, which steady writes from other
 * connections never let a PASSIVE checkpoint see; RESTART makes new writers
 * wait until it is done (35 ms of a commit in a review's run), so the next
 * one starts the WAL over. It is tried only when no reader is in the way.
 */
const RESTART_FRAMES = 4000;
/**
 * What serving connections keep of SQLite's own checkpoints: a net, not the
 * way. The thread keeps the WAL far below it; without the thread (it could
 * not start, or is between restarts) a commit checkpoints on its loop as
 * before, only ten times as rarely, and the WAL stays bounded.
 */
export const FALLBACK_FRAMES = 10_000;
/** How long after the thread was lost another is started, at first; doubled after each loss, up to MAX_RETRY_MS. */
const RETRY_MS = 1000;
const MAX_RETRY_MS = 60_000;
/** How long a stop waits for the last checkpoint. */
const STOP_MS = 5000;

/**
 * The thread's whole program: its own connection to the database file and a
 * PASSIVE checkpoint every EVERY_MS (which waits for no reader or writer, and
 * returns at once when the WAL holds nothing new), then a RESTART one when
 * the WAL is RESTART_FRAMES long. Not more often: the first commit
 * after a checkpoint emptied the WAL starts it over and fsyncs its header, on
 * that commit's event loop. Given as source, as the hashing thread is
 * (offloaded-sha256.ts): a worker gets no TypeScript loader on Node 20. Its
 * only file descriptors are SQLite's own (closing another descriptor of the
 * -shm file would drop the process's POSIX locks on it).
 */
const THREAD_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const said = (err) => String((err && (err.message || err.code)) || err);
let db;
try {
  const Database = require(workerData.driver);
  db = new Database(workerData.file, { fileMustExist: true });
  db.pragma('busy_timeout = 5000');
} catch (err) {
  parentPort.postMessage({ failed: said(err) });
  process.exit(1);
}
const checkpoint = () => {
  try {
    const [{ log }] = db.pragma('wal_checkpoint(PASSIVE)');
    if (log >= workerData.restartFrames) {
      // Without waiting: a RESTART that waits holds the writer lock meanwhile, and a reader kept open
      // (an operator's sqlite3 shell) then stalled a commit on its event loop for the whole busy timeout.
      // Refused, it does what it can as a PASSIVE one, and the next turn tries again.
      db.pragma('busy_timeout = 0');
      try {
        db.pragma('wal_checkpoint(RESTART)');
      } finally {
        db.pragma('busy_timeout = 5000');
      }
    }
    parentPort.postMessage({ ok: true });
  } catch (err) {
    parentPort.postMessage({ error: said(err) });
  }
};
const timer = setInterval(checkpoint, workerData.everyMs);
parentPort.on('message', (m) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  checkpoint();
  db.close();
  parentPort.close();
});
`;

/**
 * SQLite checkpoints on a thread of their own. A connection left to itself
 * checkpoints when a commit takes the WAL past 1,000 pages, inside that
 * commit: on a serving process's event loop, with the fsyncs of the WAL and
 * of the database file (13 ms of a worker's loop in one strace here, and
 * every session of the process waits meanwhile). Serving connections raise
 * that to FALLBACK_FRAMES (SqliteStore.serve) and the process
 * that coordinates (the primary, or the one process) runs this thread.
 * Its checkpoints take no lock a commit needs, except the RESTART one of a
 * long WAL. What stays with a commit is the fsync of a
 * fresh WAL's header after a checkpoint emptied it (under 6 ms in the same
 * strace): once per EVERY_MS per process that writes, at most. A thread that
 * cannot start or is lost is started again, later each time, and said once
 * per failure in the log; meanwhile the fallback checkpoints.
 */
export class Checkpointer {
  private worker: Worker | null = null;
  private restart: NodeJS.Timeout | null = null;
  private stopped = false;
  private delay = RETRY_MS;

  constructor(
    private readonly file: string,
    private readonly onError: (message: string) => void,
  ) {
    this.start();
  }

  private start(): void {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    const worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { driver, file: this.file, everyMs: EVERY_MS, restartFrames: RESTART_FRAMES } });
    let why: string | null = null;
    worker.on('message', (m: { ok?: true; error?: string; failed?: string }) => {
      if (m.ok) this.delay = RETRY_MS;
      else if (m.failed) why = m.failed;
      else if (m.error) this.onError(`checkpoint failed: ${m.error}`);
    });
    worker.on('error', (err: unknown) => (why = String((err as Error | undefined)?.message ?? err)));
    worker.on('exit', () => {
      if (this.worker !== worker) return;
      this.worker = null;
      if (this.stopped) return;
      this.onError(`checkpoint thread ended${why ? ` (${why})` : ''}: another in ${this.delay / 1000} s; commits checkpoint meanwhile`);
      this.restart = setTimeout(() => {
        this.restart = null;
        if (!this.stopped) this.start();
      }, this.delay);
      this.restart.unref();
      this.delay = Math.min(this.delay * 2, MAX_RETRY_MS);
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
    // A thread stuck in a checkpoint (a disk that hangs) is not waited for past STOP_MS: terminate() cannot
    // interrupt a native call, so the stop goes on without it; the WAL keeps what it had not moved.
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        void worker.terminate();
        resolve();
      }, STOP_MS);
    });
    await Promise.race([exited, late]);
    clearTimeout(timer);
  }
}
