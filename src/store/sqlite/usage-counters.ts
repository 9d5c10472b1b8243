import type { Database, Statement } from 'better-sqlite3';
import type { UsageStore } from '../../session/account.js';

interface Usage {
  bytes: number;
  files: number;
}

/** How long a change of usage may wait to be written with the others. */
const FLUSH_MS = 100;

/**
 * The users' usage counters in SQLite, read by the quota ledgers at once. A
 * change is summed in memory and written with every other of the next
 * FLUSH_MS in one transaction: one write per upload made a WAL frame each
 * (60 µs of the event loop here), and a checkpoint with its fsyncs (about
 * 20 ms of the loop) every thousand or so small files. Reads add what is
 * not written yet, so the ledgers and the admin API see every change at
 * once. A crash loses at most FLUSH_MS of changes, which the recount of the
 * homes at the next start (home-sweep.ts) puts right, as it does for an
 * upload in place that a crash cut short.
 */
export class SqliteUsageCounters implements UsageStore {
  private pending = new Map<number, Usage>();
  private timer: NodeJS.Timeout | null = null;
  private readonly q: Record<'usage' | 'add' | 'set', Statement>;
  private readonly write: (batch: Map<number, Usage>) => void;

  constructor(db: Database) {
    this.q = {
      usage: db.prepare('SELECT used_bytes AS bytes, used_files AS files FROM users WHERE id = ?'),
      add: db.prepare('UPDATE users SET used_bytes = MAX(0, used_bytes + ?), used_files = MAX(0, used_files + ?) WHERE id = ?'),
      set: db.prepare('UPDATE users SET used_bytes = ?, used_files = ? WHERE id = ?'),
    };
    this.write = db.transaction((batch: Map<number, Usage>) => {
      for (const [id, d] of batch) this.q.add.run(d.bytes, d.files, id);
    });
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
    const now = this.usage(userId);
    const d = this.pending.get(userId) ?? { bytes: 0, files: 0 };
    d.bytes += Math.max(0, now.bytes + bytes) - now.bytes;
    d.files += Math.max(0, now.files + files) - now.files;
    this.pending.set(userId, d);
    // Unref'd: a process that ends without close() loses no more than a crash would.
    this.timer ??= setTimeout(() => this.flush(), FLUSH_MS).unref();
  }

  /** Written at once: an administrator's change, or another process's store (UserRepository.addUsage). */
  addNow(userId: number, bytes: number, files: number): void {
    this.flush();
    this.q.add.run(bytes, files, userId);
  }

  setUsage(userId: number, bytes: number, files: number): void {
    this.pending.delete(userId);
    this.q.set.run(bytes, files, userId);
  }

  /** Write the changes summed so far; called on the timer and when the store closes. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    this.write(batch);
  }
}
