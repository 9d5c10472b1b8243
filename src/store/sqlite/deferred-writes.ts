import type { Database, Statement } from 'better-sqlite3';
import type { UsageStore } from '../../session/account.js';
import { lockedOut, sqliteWriteSoon, WRITE_PATIENCE_MS } from './write-errors.js';

interface Usage {
  bytes: number;
  files: number;
}

/** How long a change may wait to be written with the others. */
const FLUSH_MS = 100;
/** How long after a failed write it is tried again, at most. */
const RETRY_MS = 1000;
/** After a write refused for another process's lock, the first retry; doubled up to RETRY_MS while it is refused. */
const LOCKED_RETRY_MS = 25;

/**
 * The users' usage counters and last logins in SQLite, written in batches:
 * a change is kept in memory and written with every other of the next
 * FLUSH_MS in one transaction. One write per upload or login made a WAL
 * frame each (60 µs of the event loop here), and the WAL grew 50 times as
 * fast towards a checkpoint (a thread's since checkpointer.ts, the loop's
 * before: about 20 ms of it). Reads add what is not written yet, so
 * the quota ledgers and the admin API see every change at once. A crash
 * loses at most FLUSH_MS of changes: the recount of the homes at the next
 * start (home-sweep.ts) puts the usage right, as it does for an upload in
 * place that a crash cut short; a last login is only a little older.
 */
export class DeferredUserWrites implements UsageStore {
  private pending = new Map<number, Usage>();
  private logins = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  /** Since when the writes have been refused, the next retry's delay, and whether that was said. */
  private refused: { since: number; retryMs: number; said: boolean } | null = null;
  private readonly q: Record<'usage' | 'add' | 'set' | 'login', Statement>;
  private readonly write: (usage: Map<number, Usage>, logins: Map<number, number>) => void;

  constructor(db: Database) {
    this.q = {
      usage: db.prepare('SELECT used_bytes AS bytes, used_files AS files FROM users WHERE id = ?'),
      add: db.prepare('UPDATE users SET used_bytes = MAX(0, used_bytes + ?), used_files = MAX(0, used_files + ?) WHERE id = ?'),
      set: db.prepare('UPDATE users SET used_bytes = ?, used_files = ? WHERE id = ?'),
      login: db.prepare('UPDATE users SET last_login_at = ? WHERE id = ?'),
    };
    this.write = db.transaction((usage: Map<number, Usage>, logins: Map<number, number>) => {
      for (const [id, d] of usage) this.q.add.run(d.bytes, d.files, id);
      for (const [id, at] of logins) this.q.login.run(at, id);
    });
  }

  /** A login of `userId` at `at` (unix ms). */
  login(userId: number, at: number): void {
    this.logins.set(userId, at);
    this.schedule();
  }

  /** `stored` (as read from the row) or the login not written yet. */
  lastLogin(userId: number, stored: number | null): number | null {
    return this.logins.get(userId) ?? stored;
  }

  usage(userId: number): Usage {
    const stored = (this.q.usage.get(userId) as Usage | undefined) ?? { bytes: 0, files: 0 };
    return this.withPending(userId, stored);
  }

  /** `stored` (as read from the row) with the changes not written yet. */
  withPending(userId: number, stored: Usage): Usage {
    const d = this.pending.get(userId);
    return d ? { bytes: Math.max(0, stored.bytes + d.bytes), files: Math.max(0, stored.files + d.files) } : stored;
  }

  /** The ledgers' settlements: summed, written within FLUSH_MS; never below zero, each change in turn, as when written one by one. */
  addUsage(userId: number, bytes: number, files: number): void {
    const d = this.pending.get(userId) ?? { bytes: 0, files: 0 };
    if (bytes >= 0 && files >= 0) {
      // Nothing to clamp: a new file's settlement (most of them) reads no row.
      d.bytes += bytes;
      d.files += files;
    } else {
      const now = this.usage(userId);
      d.bytes += Math.max(0, now.bytes + bytes) - now.bytes;
      d.files += Math.max(0, now.files + files) - now.files;
    }
    this.pending.set(userId, d);
    this.schedule();
  }

  private schedule(delay = FLUSH_MS): void {
    // Unref'd: a process that ends without close() loses no more than a crash would.
    if (!this.closed) this.timer ??= setTimeout(() => this.flush(), delay).unref();
  }

  /** Written at once: an administrator's change, or another process's store (UserRepository.addUsage). */
  addNow(userId: number, bytes: number, files: number): void {
    this.flush();
    this.q.add.run(bytes, files, userId);
  }

  /** A removed user: what waits to be written for its id is dropped, or it would land on the next user given that id. */
  forget(userId: number): void {
    this.pending.delete(userId);
    this.logins.delete(userId);
  }

  setUsage(userId: number, bytes: number, files: number): void {
    this.q.set.run(bytes, files, userId);
    // Only once the recount is written: a refused one leaves the changes it would have replaced.
    this.pending.delete(userId);
  }

  /**
   * Write the changes kept so far; called on the timer and by close(). A
   * write that fails (the database locked by another process, a full disk)
   * keeps them, and is tried again: thrown from the timer it would have ended
   * the process, and lost them. A lock is waited for between tries, on timers,
   * as sqliteWriteSoon does, and said once it has lasted WRITE_PATIENCE_MS;
   * anything else is said at once and tried again each RETRY_MS. False when
   * it failed.
   */
  flush(): boolean {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const tried = Date.now();
    try {
      this.writeKept();
    } catch (err) {
      const refused = (this.refused ??= { since: tried, retryMs: LOCKED_RETRY_MS / 2, said: false });
      const locked = lockedOut(err);
      refused.retryMs = locked ? Math.min(refused.retryMs * 2, RETRY_MS) : RETRY_MS;
      if (!refused.said && (!locked || Date.now() - refused.since >= WRITE_PATIENCE_MS)) {
        refused.said = true;
        process.emitWarning(`usage and last logins not written to SQLite yet, trying again until they are: ${(err as Error).message}`, 'SluiceStoreWarning');
      }
      this.schedule(refused.retryMs);
      return false;
    }
    if (this.refused?.said) process.emitWarning(`usage and last logins written to SQLite, ${Math.round((Date.now() - this.refused.since) / 1000)} s late`, 'SluiceStoreWarning');
    this.refused = null;
    return true;
  }

  /** The changes kept so far, written in one transaction; one that throws wrote nothing, and they are kept as they were. */
  private writeKept(): void {
    if (this.pending.size === 0 && this.logins.size === 0) return;
    const [usage, logins] = [this.pending, this.logins];
    this.pending = new Map();
    this.logins = new Map();
    try {
      this.write(usage, logins);
    } catch (err) {
      // Nothing was added meanwhile (it runs synchronously).
      [this.pending, this.logins] = [usage, logins];
      throw err;
    }
  }

  /**
   * The last write, before the database closes. Another process's lock is waited for between tries, on timers,
   * as sqliteWriteSoon waits: tried once, a serving connection (SERVING_BUSY_MS a try) lost what it kept to any
   * lock held 20 ms at the stop (found by a review). What it still cannot write is lost, as in a crash (see above).
   */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    try {
      await sqliteWriteSoon(() => this.writeKept());
    } catch (err) {
      process.emitWarning(`usage and last logins not written to SQLite at the stop, lost (the next start recounts the usage): ${(err as Error).message}`, 'SluiceStoreWarning');
    }
  }
}
