import type Database from 'better-sqlite3';
import type { Store } from '../store.js';
import { SqliteAdminTokens } from './admin-tokens.js';
import { SqliteBans } from './bans.js';
import { Checkpointer, FALLBACK_FRAMES } from './checkpointer.js';
import { DatabaseUnwritable, openDatabase, openDatabaseToRead } from './db.js';
import { SqliteUsers } from './users.js';
import { SERVING_BUSY_MS } from './write-errors.js';

/** The embedded store: one SQLite file in this machine's data directory. */
export class SqliteStore implements Store {
  readonly kind = 'sqlite';
  readonly users: SqliteUsers;
  readonly bans: SqliteBans;
  readonly tokens: SqliteAdminTokens;
  /** One node: nothing is held in the store on another's behalf. */
  readonly nodes = null;

  constructor(
    private readonly db: Database.Database,
    private readonly file: string,
    /** Why it was opened to read only (openSqliteStore), or null. */
    readonly readOnly: string | null = null,
  ) {
    this.users = new SqliteUsers(db);
    this.bans = new SqliteBans(db);
    this.tokens = new SqliteAdminTokens(db);
  }

  /** One node's: its counts stay in its memory (see app.ts). */
  async shared(): Promise<null> {
    return null;
  }

  /**
   * A serving process's connection: it waits for another's lock SERVING_BUSY_MS at most on its event loop
   * (sqliteWriteSoon and the deferred writes wait longer between tries), and the coordinating process's
   * thread checkpoints (see Checkpointer); its commits only as a fallback. The CLI keeps the long wait.
   */
  serve(): void {
    this.db.pragma(`busy_timeout = ${SERVING_BUSY_MS}`);
    this.db.pragma(`wal_autocheckpoint = ${FALLBACK_FRAMES}`);
  }

  /** The coordinating process, serving: checkpoints on a thread from now on, for every process of the server. */
  checkpointOnThread(onError: (message: string) => void): Checkpointer {
    this.serve();
    return new Checkpointer(this.file, onError);
  }

  async ping(): Promise<void> {
    this.db.prepare('SELECT 1').get();
  }

  async close(): Promise<void> {
    await this.users.counters.close();
    this.db.close();
  }
}

/**
 * Open (creating and migrating) the SQLite store at `file`. `readable`: one
 * whose file cannot be written is opened to read only (a CLI command), not
 * refused; a write to it is then refused (StoreReadOnly).
 */
export function openSqliteStore(file: string, readable = false): SqliteStore {
  try {
    return new SqliteStore(openDatabase(file), file);
  } catch (err) {
    if (!readable || !(err instanceof DatabaseUnwritable)) throw err;
    return new SqliteStore(openDatabaseToRead(file, err), file, err.message);
  }
}
