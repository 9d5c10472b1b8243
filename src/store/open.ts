import { join } from 'node:path';
import type { Store } from './store.js';
import { openSqliteStore } from './sqlite/store.js';

/** The SQLite database of a data directory (the store when `store` is empty). */
export function sqliteFile(dataDir: string): string {
  return join(dataDir, 'sluice.db');
}

/**
 * The configured store: PostgreSQL when `store` is a URL, else SQLite in the data directory. `readable`: a SQLite
 * file that cannot be written is opened to read only (see openSqliteStore).
 */
export async function openStore(settings: { store: string; dataDir: string; storeHoldTimeout: number }, readable = false): Promise<Store> {
  if (settings.store === '') return openSqliteStore(sqliteFile(settings.dataDir), readable);
  // Loaded only when used: a single machine never has the driver in memory.
  const { openPostgresStore } = await import('./postgres/store.js');
  return openPostgresStore(settings.store, { holdTimeout: settings.storeHoldTimeout });
}
