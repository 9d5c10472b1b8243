import Database from 'better-sqlite3';
import { closeSync, openSync, statSync } from 'node:fs';
import { whyNotOpened } from './db.js';

/** A lock that one process in the machine holds until it releases it or ends. */
export interface HeldLock {
  release(): void;
}

/**
 * Takes `file`'s lock for this process, or answers null at once when another
 * process holds it. Node has no flock or fcntl; SQLite does: an exclusive
 * transaction left open holds a POSIX lock on the file, which the kernel lets
 * go of when the process ends however it ends (a SIGKILL, an OOM kill), so no
 * crash leaves a stale lock behind. The transaction writes nothing and its
 * journal is kept in memory, so the file stays empty, no journal file is
 * made, and a full disk does not stop the lock.
 *
 * POSIX locks belong to the process and any close of the file drops them:
 * nothing else in the process may open `file`.
 */
export function lockFile(file: string): HeldLock | null {
  // Created 0600 ourselves, as the store is: SQLite would use the umask.
  closeSync(openSync(file, 'a', 0o600));
  const db = new Database(file);
  try {
    db.pragma('busy_timeout = 0');
    db.pragma('journal_mode = MEMORY');
    db.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    db.close();
    if ((err as { code?: unknown }).code === 'SQLITE_BUSY') return null;
    throw whyNotOpened(file, err);
  }
  return { release: () => db.close() };
}

/**
 * Takes a shared hold of `file` for this process, waiting up to `waitMs` while
 * another holds it alone (lockFile), so that lockFile elsewhere answers null
 * for as long as it is held; or throws. The same POSIX locks through SQLite
 * as lockFile (a read transaction left open holds a shared one), let go of
 * when the process ends however it ends. A holder of lockFile may unlink the
 * file: a hold taken on a file no longer under its name is let go and taken
 * again on the one there now. As for lockFile, nothing else in the process
 * may open `file`.
 */
export function shareLockFile(file: string, waitMs: number): HeldLock {
  for (;;) {
    closeSync(openSync(file, 'a', 0o600));
    const before = statSync(file, { throwIfNoEntry: false });
    const db = new Database(file);
    try {
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(waitMs))}`);
      db.pragma('journal_mode = MEMORY');
      db.exec('BEGIN');
      db.prepare('SELECT count(*) FROM sqlite_master').get();
    } catch (err) {
      db.close();
      throw whyNotOpened(file, err);
    }
    const after = statSync(file, { throwIfNoEntry: false });
    if (before && after && before.dev === after.dev && before.ino === after.ino) return { release: () => db.close() };
    db.close();
  }
}
