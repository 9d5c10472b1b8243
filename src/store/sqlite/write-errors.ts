import { setTimeout as sleep } from 'node:timers/promises';
import { StoreConflict, StoreReadOnly, StoreUnavailable, StoreUserGone } from '../store.js';

/**
 * A write SQLite refused for now and rolled back: its file system full (ENOSPC is SQLITE_FULL), or a lock
 * another process (the CLI, a checkpoint) held past busy_timeout (SQLITE_BUSY and its extended codes). Other
 * I/O errors (a failing disk, a damaged file) are not "try again": they stay errors of the server, logged.
 */
const UNWRITABLE = /^SQLITE_(FULL|BUSY)(_|$)/;

/**
 * How long a serving process's write waits for another's lock, on its event loop, per try. SQLite's busy
 * timeout is a synchronous sleep: at the 5 s the CLI keeps, an operator's sqlite3 shell in a transaction froze
 * every session of the process for 5 s per write (found in admin-store-locked). sluice's own processes hold
 * the lock for a millisecond or so; a longer wait is made between tries, off the loop (sqliteWriteSoon).
 */
export const SERVING_BUSY_MS = 20;

/** How long a write is tried again while another process holds the lock: the busy timeout the CLI keeps. */
export const WRITE_PATIENCE_MS = 5000;

/** Whether SQLite refused for a lock another connection holds (a retry may succeed at once). */
export function lockedOut(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_BUSY');
}

/**
 * `write()`, with SQLite's errors as the store's own: its unique constraints (a taken name, a key the user
 * has) as StoreConflict, its foreign keys (a user removed by another process since it was read) as
 * StoreUserGone, and a write it could not make now (UNWRITABLE) as StoreUnavailable (the admin API answered a ban's
 * removal on a full disk with 500 and 'internal error', where nothing was wrong with the request or the
 * server and the same request went through once there was room: found in a clean run).
 */
export function sqliteWrite<T>(write: () => T): T {
  try {
    return write();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'string') throw err;
    if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new StoreConflict((err as Error).message);
    if (code === 'SQLITE_CONSTRAINT_FOREIGNKEY') throw new StoreUserGone((err as Error).message);
    // Opened to read only (openDatabaseToRead): said as such, not as a write that may go through later.
    if (code.startsWith('SQLITE_READONLY')) throw new StoreReadOnly(`the user store cannot be written (${(err as Error).message}); nothing was changed`, { cause: err });
    if (UNWRITABLE.test(code)) {
      throw new StoreUnavailable(`the user store cannot be written now (${(err as Error).message}); nothing was changed: try again`, { cause: err });
    }
    throw err;
  }
}

/**
 * sqliteWrite, tried again while another process holds the lock, for up to WRITE_PATIENCE_MS in all: the
 * waits between tries are timers, so the process serves meanwhile. `write` must be whole on each try (one
 * statement, or one transaction: a refused one wrote nothing).
 */
export async function sqliteWriteSoon<T>(write: () => T): Promise<T> {
  const deadline = Date.now() + WRITE_PATIENCE_MS;
  for (let pause = 10; ; pause = Math.min(pause * 2, 250)) {
    try {
      return sqliteWrite(write);
    } catch (err) {
      if (!(err instanceof StoreUnavailable && lockedOut(err.cause)) || Date.now() + pause > deadline) throw err;
      await sleep(pause);
    }
  }
}
