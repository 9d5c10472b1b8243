import Database from 'better-sqlite3';
import { closeSync, constants, fchmodSync, fstatSync, lstatSync, mkdirSync, openSync, readSync, statfsSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { blockingPause } from '../../blocking-pause.js';
import { errnoWords } from '../../errno-words.js';
import { regularFile } from '../../regular-file.js';
import { loadMigrations, migrationsDir, newerThanCode } from '../migrations.js';
import { migrate } from './migrate.js';
import { lockedOut } from './write-errors.js';

/**
 * Open (creating if needed) the user database: owner-only file mode, WAL,
 * foreign keys, migrations applied. Start-up only, so synchronous I/O is fine.
 */
export function openDatabase(file: string, dir = migrationsDir('sqlite')): Database.Database {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // Create it 0600 ourselves: SQLite would use the umask, and its -wal/-shm follow the main file's mode. Opened
  // without waiting and looked at before its mode is set (found by a review: a FIFO there held every command, and
  // `serve` deaf to SIGTERM, in this open for ever, and whatever a link there led to was made 0600 first).
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_NONBLOCK, 0o600);
  } catch (err) {
    throw notOpened(file, err);
  }
  try {
    regularFile(fstatSync(fd), file);
    fchmodSync(fd, 0o600);
  } finally {
    closeSync(fd);
  }
  for (const side of ['-wal', '-shm']) ownerWritable(file + side);
  let db: Database.Database | null = null;
  try {
    db = new Database(file);
    // First: the switch to WAL and the migrations take locks another process opening the file at once may hold.
    db.pragma('busy_timeout = 5000');
    switchToWal(db, 5000);
    db.pragma('foreign_keys = ON');
    db.pragma('synchronous = NORMAL');
    migrate(db, loadMigrations(dir));
  } catch (err) {
    db?.close();
    throw whyNotOpened(file, err);
  }
  return db;
}

/**
 * `file` (a -wal or -shm) made 0600 when it is there: a read-only open of a
 * database whose file could not be written (openDatabaseToRead, or an
 * operator's `sqlite3 -readonly`) leaves them in that file's mode, 0400, and
 * once the file could be written again SQLite took them as they were and
 * refused every write, 'attempt to write a readonly database'. Not followed
 * if a link; one this user cannot change is left for SQLite to report.
 */
function ownerWritable(file: string): void {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW | constants.O_NOCTTY);
  } catch {
    return;
  }
  try {
    if (fstatSync(fd).isFile()) fchmodSync(fd, 0o600);
  } catch {
    // Another user's: SQLite says what it cannot do with it.
  } finally {
    closeSync(fd);
  }
}

/**
 * The database opened to read only, for a command that may not write its
 * file (DatabaseUnwritable: its mode; its directory is writable, the CLI
 * checks it first, so a read-only mount never gets here): what reads answers
 * (`user list`, `ban list`), and a write is refused (StoreReadOnly). Its
 * schema must be this code's already, bringing it up to date is a write. Read
 * with a WAL, which needs DATABASE-shm: SQLite makes it, and -wal, beside the
 * file if they are not there, so its directory must be writable then.
 */
export function openDatabaseToRead(file: string, unwritable: DatabaseUnwritable, dir = migrationsDir('sqlite')): Database.Database {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    regularFile(fstatSync(fd), file);
  } finally {
    closeSync(fd);
  }
  let db: Database.Database | null = null;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const migrations = loadMigrations(dir);
    const current = (db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null }).v ?? 0;
    const newer = newerThanCode(current, migrations);
    if (newer) throw newer;
    const known = migrations.at(-1)?.version ?? 0;
    if (current < known) throw new Error(`${unwritable.message}, and its schema (version ${current}) is older than this sluice's (${known}): only a command that may write it brings it up to date`);
    return db;
  } catch (err) {
    db?.close();
    const code = (err as { code?: unknown }).code;
    if (code === 'SQLITE_READONLY_DIRECTORY' || code === 'SQLITE_CANTOPEN') throw new Error(`${unwritable.message}, nor read: ${whyNoShm(file)}`);
    throw whyNotOpened(file, err);
  }
}

/**
 * Why SQLite could not open DATABASE-shm, which reading a WAL database needs: made beside it when it is not
 * there, so then the directory is what cannot be written; when it is there, it is what cannot be opened (another
 * user's, a mode without read and write, a link). Both were said as the first (found by a review: a -shm
 * left by root, in a directory this user may write).
 */
function whyNoShm(file: string): string {
  const shm = `${basename(file)}-shm`;
  try {
    lstatSync(`${file}-shm`);
  } catch {
    return `reading it makes ${shm} beside it, and its directory cannot be written either`;
  }
  return `reading it opens ${shm} beside it to read and write, and this user cannot open that one`;
}

/** The database file could not be opened to write (permission denied, a read-only file system). */
export class DatabaseUnwritable extends Error {
  override readonly name = 'DatabaseUnwritable';
  constructor(readonly file: string, readonly why: string) {
    super(`${file} cannot be written: ${why}`);
  }
}

/**
 * Why the database file did not open, one line naming it: libuv's words
 * ("EISDIR: illegal operation on a directory, open '...'") were what the
 * CLI printed (found by an operator's review).
 */
function notOpened(file: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'EISDIR') return new Error(`${file} is a directory, not a regular file`);
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') return new DatabaseUnwritable(file, errnoWords(err));
  return new Error(`${file}: ${errnoWords(err)}`);
}

/**
 * The switch to WAL, tried again while another process holds a lock it needs, for up to `ms`: SQLite answers
 * SQLITE_BUSY there at once, whatever the busy timeout, so of two processes opening a new database at once (a
 * first `serve` beside a CLI command, two `init`s) one failed 'database is locked' (found by a review: in 28 of
 * 30 tries with two processes let go together). Start-up only: the waits between tries block.
 */
function switchToWal(db: Database.Database, ms: number): void {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      db.pragma('journal_mode = WAL');
      return;
    } catch (err) {
      if (!lockedOut(err) || Date.now() >= deadline) throw err;
      blockingPause(10);
    }
  }
}

/**
 * SQLite's own words name neither the file nor the cause: on a full file
 * system the server stopped with a bare 'disk I/O error' (found by a review).
 */
export function whyNotOpened(file: string, err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return err;
  const full = (() => {
    try {
      return statfsSync(dirname(file)).bavail === 0;
    } catch {
      return false;
    }
  })();
  return new Error(`${file}: ${(err as Error).message} (${code})${full ? '; its file system is full' : ''}`);
}

const MAGIC = Buffer.from('SQLite format 3\0', 'latin1');

/**
 * Why `file` is no sluice database, or null; `file` is only read. For a
 * command that copies from a file it is given (`sluice store
 * migrate-from-sqlite`), before openDatabase, which would make any file 0600
 * and give any SQLite database (one given by mistake) sluice's tables.
 */
export function notSluiceDatabase(file: string): string | null {
  const header = Buffer.alloc(MAGIC.length);
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    regularFile(fstatSync(fd), file);
    if (readSync(fd, header, 0, header.length, 0) < header.length || !header.equals(MAGIC)) return `${file} is not a SQLite database`;
  } finally {
    closeSync(fd);
  }
  let db: Database.Database | null = null;
  try {
    db = new Database(file, { fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const found = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get();
    return found === undefined ? `${file} is a SQLite database, but not sluice's (it has no schema_migrations table)` : null;
  } catch (err) {
    throw whyNotOpened(file, err);
  } finally {
    db?.close();
  }
}

/**
 * Whether the database at `file` holds no user, ban or admin token: for a
 * command that made it and failed, before it removes it again, in case
 * another command made use of it meanwhile (cli/store-places.ts). False when
 * it cannot tell.
 */
export function holdsNothing(file: string): boolean {
  let db: Database.Database | null = null;
  try {
    db = new Database(file, { fileMustExist: true });
    db.pragma('busy_timeout = 5000');
    const row = db.prepare('SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM bans) + (SELECT count(*) FROM admin_tokens) AS n').get() as { n: number };
    return row.n === 0;
  } catch {
    return false;
  } finally {
    db?.close();
  }
}
