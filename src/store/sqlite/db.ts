import Database from 'better-sqlite3';
import { chmodSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadMigrations, migrationsDir } from '../migrations.js';
import { migrate } from './migrate.js';

/**
 * Open (creating if needed) the user database: owner-only file mode, WAL,
 * foreign keys, migrations applied. Start-up only, so synchronous I/O is fine.
 */
export function openDatabase(file: string, dir = migrationsDir('sqlite')): Database.Database {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  // Create it 0600 ourselves: SQLite would use the umask, and its -wal/-shm follow the main file's mode.
  closeSync(openSync(file, 'a', 0o600));
  chmodSync(file, 0o600);
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    db.pragma('synchronous = NORMAL');
    migrate(db, loadMigrations(dir));
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}
