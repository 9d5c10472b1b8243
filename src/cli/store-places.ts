import { closeSync, constants, existsSync, openSync, rmdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ensureWritableDir } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { holdsNothing } from '../store/sqlite/db.js';
import { lockFile, shareLockFile, type HeldLock } from '../store/sqlite/file-lock.js';

/**
 * What a command made on its way to the store (the data directory, its
 * homes/, a new SQLite database), for undoing when the command fails: a
 * failed command leaves the file system as it found it. Found by a review:
 * run in an empty directory, `store nodes` without PostgreSQL, `user show
 * nobody` or `ban remove` of an address not banned failed and left data/ (a
 * new database in it) and certs/ behind.
 *
 * Never what another command uses: each command of a SQLite store holds
 * DATABASE.cli-lock shared while it runs, and a failed one removes the
 * database it made only when it can take that lock alone. Found by a review:
 * a command that failed beside one that succeeded, on a new data directory,
 * removed the database the other had opened, whose user was then written to
 * a file no longer there, and said added.
 */
export interface StorePlaces {
  /** The SQLite database this command makes, none being there; null when one is, or the store is PostgreSQL. */
  readonly fresh: string | null;
  /**
   * Once the store is closed, after the command: kept if it succeeded, else what was made removed, unless another
   * command or a server uses it; what is no longer as it was made (a directory that holds something) stays.
   * Whether `fresh` is there still.
   */
  settle(succeeded: boolean): { kept: boolean };
}

/** How long a command waits for another that is removing what it made (a moment: it removes files, no more). */
const WAIT_MS = 10_000;

/** Make the data directory (0700, checked usable, as serve makes it) and note what was there before. */
export function prepareStorePlaces(config: Config, sqliteFile: (dataDir: string) => string): StorePlaces {
  const dataDir = resolve(config.dataDir);
  const homes = join(dataDir, 'homes');
  const file = config.store === '' ? sqliteFile(dataDir) : null;
  const homesThere = existsSync(homes);
  const firstMade = ensureWritableDir('dataDir', dataDir);
  const lockName = file === null ? null : `${file}.cli-lock`;
  // Before the database is looked at: a command removing what it made holds the lock alone meanwhile. One that
  // cannot be taken (another user's, left by a command killed as root) does not stop the command; it then
  // removes no database, whoever may use it.
  let held: HeldLock | null = null;
  let unlocked = false;
  if (lockName !== null) {
    try {
      held = shareLockFile(lockName, WAIT_MS);
    } catch {
      unlocked = true;
    }
  }
  // Made here, exclusively: a database another command made the moment before is that command's.
  const fresh = file !== null && madeNow(file) ? file : null;
  return {
    fresh,
    settle: (succeeded) => {
      held?.release();
      held = null;
      // Alone, or not at all: another command holding the lock uses the database, made by either.
      const alone = lockName === null || unlocked ? null : takenAlone(lockName);
      if (lockName !== null && alone === null) return { kept: fresh !== null };
      try {
        let kept = fresh !== null;
        // A server that started here meanwhile took serve.lock before it opened the database: then the database is
        // its; a command that wrote to it and ended meanwhile has left something in it.
        if (!succeeded && fresh !== null && !existsSync(join(dataDir, 'serve.lock')) && (emptyFile(fresh) || holdsNothing(fresh))) {
          for (const suffix of ['', '-wal', '-shm', '-journal']) rmSync(fresh + suffix, { force: true });
          kept = false;
        }
        // The lock file goes with the last command: a command waiting on it takes it again under its name.
        if (lockName !== null) rmSync(lockName, { force: true });
        if (!succeeded) removeMade([...(homesThere ? [] : [homes]), ...(firstMade === undefined ? [] : madeChain(resolve(firstMade), dataDir))]);
        return { kept };
      } finally {
        alone?.release();
      }
    },
  };
}

/** The lock taken alone, or null: another holds it, or it cannot be taken. */
function takenAlone(file: string): HeldLock | null {
  try {
    return lockFile(file);
  } catch {
    return null;
  }
}

/** Whether `file` is as madeNow left it: empty, the store never opened on it (the command failed before). */
function emptyFile(file: string): boolean {
  return statSync(file, { throwIfNoEntry: false })?.size === 0;
}

/** Whether `file` was made now, 0600, by this call; false when it was there. */
function madeNow(file: string): boolean {
  try {
    closeSync(openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** Remove the directories made, deepest first, stopping at one that is no longer only what this command made. */
function removeMade(made: readonly string[]): void {
  for (const dir of made) {
    try {
      rmdirSync(dir);
    } catch {
      // Not empty, or gone: it is no longer only what this command made.
      return;
    }
  }
}

/** `dir` and its parents up to `first`, deepest first: what mkdir -p made. */
function madeChain(first: string, dir: string): string[] {
  const chain: string[] = [];
  for (let d = dir; !relative(first, d).startsWith('..'); d = dirname(d)) {
    chain.push(d);
    if (d === first) break;
  }
  return chain;
}
