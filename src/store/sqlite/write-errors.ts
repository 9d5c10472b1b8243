import { StoreConflict, StoreUnavailable, StoreUserGone } from '../store.js';

/**
 * A write SQLite refused for now and rolled back: its file system full (ENOSPC is SQLITE_FULL), or a lock
 * another process (the CLI, a checkpoint) held past busy_timeout (SQLITE_BUSY and its extended codes). Other
 * I/O errors (a failing disk, a damaged file) are not "try again": they stay errors of the server, logged.
 */
const UNWRITABLE = /^SQLITE_(FULL|BUSY)(_|$)/;

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
    if (UNWRITABLE.test(code)) {
      throw new StoreUnavailable(`the user store cannot be written now (${(err as Error).message}); nothing was changed: try again`, { cause: err });
    }
    throw err;
  }
}
