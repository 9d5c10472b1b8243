import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** migrations/sqlite and migrations/postgres: one versioned list per dialect, the same versions in both. */
export function migrationsDir(dialect: 'sqlite' | 'postgres'): string {
  return fileURLToPath(new URL(`../../migrations/${dialect}`, import.meta.url));
}

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

const FILE = /^(\d{3,})_([a-z0-9_]+)\.sql$/;

/** The migrations of one dialect: read `NNN_name.sql` files in version order; anything else in the folder is an error. */
export function loadMigrations(dir: string): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    const m = FILE.exec(file);
    if (!m) throw new Error(`migrations: unexpected file ${file} (expected NNN_name.sql)`);
    const version = Number(m[1]);
    if (out.some((x) => x.version === version)) throw new Error(`migrations: version ${version} appears twice`);
    out.push({ version, name: m[2] as string, sql: readFileSync(join(dir, file), 'utf8') });
  }
  return out.sort((a, b) => a.version - b.version);
}

/** A database whose schema is newer than these migrations: refused, never written. */
export function newerThanCode(current: number, migrations: readonly Migration[]): Error | null {
  const known = migrations.at(-1)?.version ?? 0;
  if (current <= known) return null;
  return new Error(
    `database schema version ${current} is newer than this sluice understands (${known}); upgrade sluice or restore a matching database`,
  );
}
