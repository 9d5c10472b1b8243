import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { loadMigrations, migrationsDir } from '../src/store/migrations.js';
import type { UserSettings } from '../src/store/records.js';
import { openDatabase } from '../src/store/sqlite/db.js';
import { migrate } from '../src/store/sqlite/migrate.js';
import { StoreConflict } from '../src/store/store.js';
import { SqliteUsers } from '../src/store/sqlite/users.js';

const MIGRATIONS_DIR = migrationsDir('sqlite');

const dir = mkdtempSync(join(tmpdir(), 'sluice-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const settings = (over: Partial<UserSettings> = {}): UserSettings => ({
  home: '/srv/x', enabled: true, expiresAt: null, protocols: ['sftp'], requireTls: false, requireKey: false,
  permissions: ['list'], quotaBytes: 0, quotaFiles: 0, rateUp: null, rateDown: null, scan: null, allowIps: [], denyIps: [], ...over,
});

describe('migrations', () => {
  it('apply on a fresh database and are recorded', () => {
    const file = join(dir, 'fresh.db');
    const db = openDatabase(file);
    const rows = db.prepare('SELECT version, name FROM schema_migrations').all();
    assert.deepEqual(rows, loadMigrations(MIGRATIONS_DIR).map((m) => ({ version: m.version, name: m.name })));
    db.close();
  });

  it('re-running applies nothing and keeps data', async () => {
    const file = join(dir, 'rerun.db');
    const db1 = openDatabase(file);
    await new SqliteUsers(db1).create('keep', null, settings());
    db1.close();
    const db2 = openDatabase(file);
    assert.deepEqual(migrate(db2, loadMigrations(MIGRATIONS_DIR)), []);
    assert.equal((await new SqliteUsers(db2).get('keep'))?.name, 'keep');
    db2.close();
  });

  it('a failing migration leaves the database as it was', () => {
    const mdir = join(dir, 'mig-fail');
    mkdirSync(mdir);
    writeFileSync(join(mdir, '001_ok.sql'), 'CREATE TABLE a (x INTEGER);');
    writeFileSync(join(mdir, '002_bad.sql'), 'CREATE TABLE b (y INTEGER); INSERT INTO nope VALUES (1);');
    const db = new Database(join(dir, 'fail.db'));
    assert.throws(() => migrate(db, loadMigrations(mdir)), /no such table: nope/);
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").all();
    assert.deepEqual(tables.map((t) => (t as { name: string }).name), ['a', 'schema_migrations']);
    assert.equal((db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number }).v, 1);
    db.close();
  });

  it('a database newer than the code refuses to start', () => {
    const file = join(dir, 'newer.db');
    openDatabase(file).close();
    const db = new Database(file);
    db.prepare('INSERT INTO schema_migrations VALUES (999, ?, ?)').run('future', Date.now());
    db.close();
    assert.throws(() => openDatabase(file), /schema version 999 is newer than this sluice understands/);
  });

  it('rejects stray files in the migrations folder', () => {
    const mdir = join(dir, 'mig-stray');
    mkdirSync(mdir);
    writeFileSync(join(mdir, 'notes.txt'), '');
    assert.throws(() => loadMigrations(mdir), /unexpected file notes.txt/);
  });

  it('the database file is owner-only (0600)', () => {
    const file = join(dir, 'mode.db');
    openDatabase(file).close();
    assert.equal(statSync(file).mode & 0o777, 0o600);
  });
});

describe('user store', () => {
  const db = openDatabase(join(dir, 'users.db'));
  const store = new SqliteUsers(db);
  after(() => db.close());

  it('creates, reads, updates and removes with rules, keys and overrides', async () => {
    const u = await store.create('carol', 'hash', settings({ allowIps: ['10.0.0.0/8'], denyIps: ['10.1.0.0/16'] }), [
      { algorithm: 'ssh-ed25519', blob: Buffer.from('k'), fingerprint: 'SHA256:x', comment: 'laptop' },
    ]);
    assert.equal(u.name, 'carol');
    assert.deepEqual(u.allowIps, ['10.0.0.0/8']);
    assert.deepEqual(u.denyIps, ['10.1.0.0/16']);
    assert.equal((await store.keys(u.id))[0]?.comment, 'laptop');
    await store.setDirPermissions(u.id, '/in', ['upload']);
    await store.update(u.id, settings({ enabled: false, quotaBytes: 5, allowIps: [] }));
    const v = (await store.get('carol'))!;
    assert.equal(v.enabled, false);
    assert.equal(v.quotaBytes, 5);
    assert.deepEqual(v.allowIps, []);
    assert.deepEqual(v.dirPermissions, [{ path: '/in', permissions: ['upload'] }]);
    await store.remove(u.id);
    assert.equal(await store.get('carol'), null);
    assert.equal(db.prepare('SELECT COUNT(*) AS n FROM user_keys').get() && (db.prepare('SELECT COUNT(*) AS n FROM user_keys').get() as { n: number }).n, 0);
  });

  it('names are unique regardless of case', async () => {
    await store.create('Dave', null, settings());
    await assert.rejects(store.create('dave', null, settings()), StoreConflict);
  });

  it('a failed insert writes nothing (no half user)', async () => {
    const before = await store.count();
    const bad = [{ algorithm: 'a', blob: Buffer.from('1'), fingerprint: 'same', comment: '' },
      { algorithm: 'a', blob: Buffer.from('2'), fingerprint: 'same', comment: '' }];
    await assert.rejects(store.create('eve', null, settings(), bad), StoreConflict);
    assert.equal(await store.count(), before);
    assert.equal(await store.get('eve'), null);
  });

  it('keeps usage counters', async () => {
    const u = await store.create('frank', null, settings());
    await store.addUsage(u.id, 100, 2);
    await store.addUsage(u.id, -30, -1);
    assert.deepEqual(await store.usage(u.id), { bytes: 70, files: 1 });
    await store.setUsage(u.id, 5, 9);
    assert.deepEqual(await store.usage(u.id), { bytes: 5, files: 9 });
  });
});
