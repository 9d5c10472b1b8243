import type { Database } from 'better-sqlite3';
import { newerThanCode, type Migration } from '../migrations.js';

/**
 * Apply what is missing, each migration in its own transaction together with
 * its bookkeeping row, so a failing file leaves the database as it was. Each
 * transaction takes the write lock first and looks again at what is applied:
 * two processes opening a new database at once (a first start beside a CLI
 * command, two `init`s) take turns, and the second finds the work done, as
 * PostgreSQL's migrator does under its advisory lock (found by a walk: the
 * second failed on schema_migrations' key). Returns the versions applied.
 */
export function migrate(db: Database, migrations: readonly Migration[]): number[] {
  // Read first: a database with nothing to apply is opened without the write lock, so a command (or a
  // restarted worker) opens it at once while another process holds that lock (each of the migrations'
  // transactions took it, and `sluice user show` waited 5 s for an operator's sqlite3 shell, then failed).
  const made = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").get() !== undefined;
  if (!made) {
    db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`);
  }
  const currentVersion = db.prepare('SELECT MAX(version) AS v FROM schema_migrations');
  const current = () => (currentVersion.get() as { v: number | null }).v ?? 0;
  const newer = newerThanCode(current(), migrations);
  if (newer) throw newer;
  const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)');
  const applied: number[] = [];
  for (const m of migrations) {
    if (m.version <= current()) continue;
    const ran = db
      .transaction(() => {
        if (m.version <= current()) return false;
        db.exec(m.sql);
        record.run(m.version, m.name, Date.now());
        return true;
      })
      .immediate();
    if (ran) applied.push(m.version);
  }
  return applied;
}
