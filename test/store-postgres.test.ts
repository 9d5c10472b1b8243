// What only the PostgreSQL store has: migrations under an advisory lock, the
// URL's password kept out of messages, the ban cache fed by LISTEN/NOTIFY
// surviving a lost connection. The Store contract itself, for both databases,
// is test/store-contract.test.ts.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loadMigrations, migrationsDir } from '../src/store/migrations.js';
import { clientConfig } from '../src/store/postgres/connection.js';
import { migrate } from '../src/store/postgres/migrate.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';

const MIGRATIONS = loadMigrations(migrationsDir('postgres'));

async function withClient<T>(url: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client(clientConfig(url));
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

const versions = (url: string) =>
  withClient(url, async (c) => (await c.query('SELECT version, name FROM schema_migrations ORDER BY version')).rows);

describe('PostgreSQL migrations', { skip: postgresMissing() ?? false }, () => {
  let server: TestPostgres;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pgmig-'));
  before(async () => (server = await startPostgres()));
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('have the same versions and names as the SQLite ones', () => {
    const sqlite = loadMigrations(migrationsDir('sqlite')).map((m) => [m.version, m.name]);
    assert.deepEqual(MIGRATIONS.map((m) => [m.version, m.name]), sqlite);
  });

  it('apply on a fresh database, are recorded, and a re-run applies nothing and keeps the data', async () => {
    const url = await server.createDatabase();
    assert.deepEqual(await withClient(url, (c) => migrate(c, MIGRATIONS)), MIGRATIONS.map((m) => m.version));
    assert.deepEqual(await versions(url), MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
    await withClient(url, (c) => c.query("INSERT INTO bans (address, reason, created_at) VALUES ('192.0.2.1', 'kept', 1)"));
    assert.deepEqual(await withClient(url, (c) => migrate(c, MIGRATIONS)), []);
    const kept = await withClient(url, async (c) => (await c.query('SELECT reason FROM bans')).rows);
    assert.deepEqual(kept, [{ reason: 'kept' }]);
  });

  it('started by several nodes at once on an empty database, all succeed and each version is applied once', async () => {
    const url = await server.createDatabase();
    const clients = await Promise.all(Array.from({ length: 4 }, async () => {
      const c = new pg.Client(clientConfig(url));
      await c.connect();
      return c;
    }));
    try {
      const applied = await Promise.all(clients.map((c) => migrate(c, MIGRATIONS)));
      assert.deepEqual(applied.flat().sort((a, b) => a - b), MIGRATIONS.map((m) => m.version));
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
    assert.deepEqual(await versions(url), MIGRATIONS.map((m) => ({ version: m.version, name: m.name })));
  });

  it('a database newer than the code is refused and left untouched', async () => {
    const url = await server.createDatabase();
    await withClient(url, (c) => migrate(c, MIGRATIONS.slice(0, 2)));
    await withClient(url, (c) => c.query("INSERT INTO schema_migrations VALUES (999, 'future', 1)"));
    await assert.rejects(withClient(url, (c) => migrate(c, MIGRATIONS)),
      new RegExp(`schema version 999 is newer than this sluice understands \\(${MIGRATIONS.at(-1)?.version}\\)`));
    const tables = await withClient(url, async (c) =>
      (await c.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).rows);
    assert.deepEqual(tables.map((t) => t.tablename), ['bans', 'schema_migrations', 'user_dir_permissions', 'user_ip_rules', 'user_keys', 'users']);
  });

  it('a failing migration leaves nothing of itself behind', async () => {
    const mdir = join(dir, 'failing');
    mkdirSync(mdir);
    writeFileSync(join(mdir, '001_ok.sql'), 'CREATE TABLE a (x INTEGER);');
    writeFileSync(join(mdir, '002_bad.sql'), 'CREATE TABLE b (y INTEGER); INSERT INTO nope VALUES (1);');
    const url = await server.createDatabase();
    await assert.rejects(withClient(url, (c) => migrate(c, loadMigrations(mdir))),
      /migration 2 \(bad\) failed: relation "nope" does not exist/);
    const tables = await withClient(url, async (c) =>
      (await c.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).rows);
    assert.deepEqual(tables.map((t) => t.tablename), ['a', 'schema_migrations']);
    assert.deepEqual(await versions(url), [{ version: 1, name: 'ok' }]);
  });

  it('a migration and its bookkeeping row commit together', async () => {
    // PostgreSQL runs one multi-statement file atomically by itself; the row that records it is a
    // second statement. Make that one fail (the version is taken) and the file's table must go too.
    const mdir = join(dir, 'bookkeeping');
    mkdirSync(mdir);
    writeFileSync(join(mdir, '001_ok.sql'), 'CREATE TABLE a (x INTEGER);');
    writeFileSync(join(mdir, '002_taken.sql'), "CREATE TABLE b (y INTEGER); INSERT INTO schema_migrations VALUES (2, 'x', 0);");
    const url = await server.createDatabase();
    await assert.rejects(withClient(url, (c) => migrate(c, loadMigrations(mdir))), /migration 2 \(taken\) failed: duplicate key/);
    const tables = await withClient(url, async (c) =>
      (await c.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")).rows);
    assert.deepEqual(tables.map((t) => t.tablename), ['a', 'schema_migrations']);
    assert.deepEqual(await versions(url), [{ version: 1, name: 'ok' }]);
  });
});
