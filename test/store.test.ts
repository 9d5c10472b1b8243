import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, it } from 'node:test';
import { loadMigrations, migrationsDir } from '../src/store/migrations.js';
import type { UserSettings } from '../src/store/records.js';
import { openDatabase } from '../src/store/sqlite/db.js';
import { migrate } from '../src/store/sqlite/migrate.js';
import { SqliteUsers } from '../src/store/sqlite/users.js';
import { BIN } from './helpers/cli.js';

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

  // Found by a review: releases before the range check stored expiries in the year 10000, which GET /users then
  // showed as +010000-..., and no client's parser reads; the fix refused new ones, and the stored ones stayed.
  it('016 moves a stored expiry outside the years 0000-9999 to the nearest date inside, and leaves the others', async () => {
    const file = join(dir, 'expiry-range.db');
    const all = loadMigrations(MIGRATIONS_DIR);
    const old = new Database(file);
    migrate(old, all.filter((m) => m.version < 16));
    const users = new SqliteUsers(old);
    const expiries: [string, number | null][] = [['late', Date.parse('9999-12-31T23:59:59Z') + 8 * 3_600_000], ['early', -62167219200001],
      ['edge', Date.parse('9999-12-31T23:59:59.999Z')], ['usual', Date.parse('2027-03-31T00:00:00Z')], ['never', null]];
    for (const [name, at] of expiries) {
      await users.create(name, null, settings());
      old.prepare('UPDATE users SET expires_at = ? WHERE name = ?').run(at, name);
    }
    old.close();
    const db = openDatabase(file);
    try {
      const shown = await Promise.all(expiries.map(async ([name]) => (await new SqliteUsers(db).get(name))?.expiresAt?.toISOString() ?? 'never'));
      assert.deepEqual(shown, ['9999-12-31T23:59:59.999Z', '0000-01-01T00:00:00.000Z', '9999-12-31T23:59:59.999Z', '2027-03-31T00:00:00.000Z', 'never']);
    } finally {
      db.close();
    }
  });

  it('017 renames a token whose name differs from an older one\'s in case alone, then keeps such names apart', () => {
    const file = join(dir, 'token-names.db');
    const old = new Database(file);
    migrate(old, loadMigrations(MIGRATIONS_DIR).filter((m) => m.version < 17));
    const add = old.prepare('INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?)');
    const hash = (first: number) => Buffer.concat([Buffer.from([first, 0xab, 0xcd, 0xef]), Buffer.alloc(28)]);
    add.run('OPS', hash(2), 2000);
    add.run('ops', hash(1), 1000);
    add.run('Ops', hash(3), 2000);
    add.run('backup', hash(4), 3000);
    old.close();
    const db = openDatabase(file);
    try {
      const names = (db.prepare('SELECT name FROM admin_tokens ORDER BY created_at, name').all() as { name: string }[]).map((r) => r.name);
      assert.deepEqual(names, ['ops', 'OPS-02abcdef', 'Ops-03abcdef', 'backup'], 'the oldest keeps its name; each other its own hash in its name');
      assert.throws(() => db.prepare('INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?)').run('BACKUP', hash(5), 4000), /UNIQUE/);
    } finally {
      db.close();
    }
  });

  it('017 gives the whole hash to a token whose renamed name another token has already', () => {
    // Found by a review: an operator's OPS-02ABCDEF beside ops and OPS (hash 02abcdef...) failed the index, and
    // no server of this version started.
    const file = join(dir, 'token-names-taken.db');
    const old = new Database(file);
    migrate(old, loadMigrations(MIGRATIONS_DIR).filter((m) => m.version < 17));
    const add = old.prepare('INSERT INTO admin_tokens (name, hash, created_at) VALUES (?, ?, ?)');
    const hash = (first: number) => Buffer.concat([Buffer.from([first, 0xab, 0xcd, 0xef]), Buffer.alloc(28)]);
    add.run('ops', hash(1), 1000);
    add.run('OPS', hash(2), 2000);
    add.run('OPS-02ABCDEF', hash(3), 3000);
    old.close();
    const db = openDatabase(file);
    try {
      const names = (db.prepare('SELECT name FROM admin_tokens ORDER BY created_at, name').all() as { name: string }[]).map((r) => r.name);
      assert.deepEqual(names, ['ops', `OPS-${hash(2).toString('hex')}`, 'OPS-02ABCDEF']);
    } finally {
      db.close();
    }
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

  it('two processes migrating a new database at once take turns: the second finds the work done', () => {
    // Found by a walk: of two `sluice init`s at once, the second failed on schema_migrations' key. The race made
    // certain here: another connection applies everything just after this one first looked at the version.
    const file = join(dir, 'at-once.db');
    const first = new Database(file);
    first.pragma('busy_timeout = 5000');
    const second = new Database(file);
    second.pragma('busy_timeout = 5000');
    const all = loadMigrations(MIGRATIONS_DIR);
    let looked = false;
    const racing = new Proxy(second, {
      get(target, key) {
        if (key !== 'prepare') return Reflect.get(target, key, target) as unknown;
        return (sql: string) => {
          const statement = target.prepare(sql);
          if (!sql.startsWith('SELECT MAX(version)')) return statement;
          return {
            get: () => {
              const row = statement.get();
              if (!looked) {
                looked = true;
                assert.deepEqual(migrate(first, all), all.map((m) => m.version), 'the other connection applies them all');
              }
              return row;
            },
          };
        };
      },
    });
    assert.deepEqual(migrate(racing, all), [], 'nothing left to apply');
    assert.equal((second.prepare('SELECT COUNT(*) AS n FROM schema_migrations').get() as { n: number }).n, all.length);
    first.close();
    second.close();
  });

  it('processes opening a new database together all open it: the switch to WAL waits for the other', { timeout: 60_000 }, async () => {
    // Found by a review: SQLite refuses the switch to WAL at once while another process makes it, whatever the busy
    // timeout: of two processes let go together, one failed 'database is locked' in 28 of 30 tries.
    const opener = `import { openDatabase } from ${JSON.stringify(new URL('../src/store/sqlite/db.js', import.meta.url).href)};
      console.log('ready');
      process.stdin.once('data', () => {
        try { openDatabase(process.argv[1]).close(); console.log('opened'); } catch (e) { console.log(e.message); }
        process.stdin.destroy();
      });`;
    for (let round = 0; round < 10; round++) {
      const file = join(dir, `together-${round}.db`);
      const children = [0, 1].map(() => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', opener, file], { stdio: ['pipe', 'pipe', 'inherit'] });
        return { child, lines: createInterface({ input: child.stdout })[Symbol.asyncIterator]() };
      });
      for (const { lines } of children) assert.equal((await lines.next()).value, 'ready');
      for (const { child } of children) child.stdin.write('go');
      const said = await Promise.all(children.map(async ({ lines }) => (await lines.next()).value as string));
      assert.deepEqual(said, ['opened', 'opened'], `round ${round}`);
    }
  });

  it('a FIFO where the database goes is refused at once, naming it, not waited on for ever', () => {
    // Found by a review: the open before SQLite's blocked on it, every CLI command and `serve` (deaf to SIGTERM) with it.
    const root = join(dir, 'fifo-db');
    mkdirSync(join(root, 'data'), { recursive: true });
    assert.equal(spawnSync('mkfifo', [join(root, 'data', 'sluice.db')]).status, 0);
    const r = spawnSync(process.execPath, [BIN, 'user', 'list'], { cwd: root, encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.signal, null, 'still waiting after 20 s');
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /sluice\.db is a FIFO, not a regular file/);
  });

  it('a directory where the database goes is said in one line naming it, not in libuv\'s words', () => {
    // Found by an operator's review: "sluice: EISDIR: illegal operation on a directory, open '.../sluice.db'".
    const root = join(dir, 'dir-db');
    mkdirSync(join(root, 'data', 'sluice.db'), { recursive: true });
    const r = spawnSync(process.execPath, [BIN, 'user', 'list'], { cwd: root, encoding: 'utf8', timeout: 20_000 });
    assert.deepEqual([r.status, r.stdout, r.stderr], [1, '', `sluice: ${join(root, 'data', 'sluice.db')} is a directory, not a regular file\n`]);
  });

  it('a database this user may not write: the commands that read answer, one that writes is refused in one line', (t) => {
    // Found by an operator's review: `user list` of a read-only database said "EACCES: permission denied, open ...".
    if (process.getuid?.() === 0) return t.skip('running as root: a file mode refuses root nothing');
    const root = join(dir, 'read-only-db');
    mkdirSync(root);
    const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: root, encoding: 'utf8', timeout: 20_000 });
    assert.equal(run('user', 'add', 'alice', '--generate-password').status, 0);
    const file = join(root, 'data', 'sluice.db');
    chmodSync(file, 0o400);
    const list = run('user', 'list');
    assert.deepEqual([list.status, list.stderr], [0, '']);
    assert.match(list.stdout, /^alice +enabled/m);
    assert.deepEqual([run('ban', 'list').status, run('admin', 'token', 'list').status], [0, 0]);
    const refused = `sluice: ${file} cannot be written: permission denied: this command changes it, and nothing was changed\n`;
    const add = run('user', 'add', 'bob', '--generate-password');
    assert.deepEqual([add.status, add.stdout, add.stderr], [1, '', refused]);
    assert.equal(existsSync(join(root, 'data', 'homes', 'bob')), false, 'the home made for bob is removed again');
    const ban = run('ban', 'add', '192.0.2.7');
    assert.deepEqual([ban.status, ban.stderr], [1, refused]);
    // The reads left sluice.db-wal and -shm in the file's mode: writable again, it takes writes again.
    chmodSync(file, 0o600);
    const again = run('ban', 'add', '192.0.2.7');
    assert.deepEqual([again.status, again.stderr], [0, '']);
  });

  it('a read-only database whose -shm this user cannot open says so, not that its directory is unwritable', (t) => {
    // Found by a review: a -shm left mode 0000 (or another user's) in a writable directory was said as "its
    // directory cannot be written either".
    if (process.getuid?.() === 0) return t.skip('running as root: a file mode refuses root nothing');
    const root = join(dir, 'read-only-shm');
    mkdirSync(root);
    const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { cwd: root, encoding: 'utf8', timeout: 20_000 });
    assert.equal(run('user', 'add', 'alice', '--generate-password').status, 0);
    const file = join(root, 'data', 'sluice.db');
    chmodSync(file, 0o400);
    writeFileSync(`${file}-shm`, '', { mode: 0o000 });
    const list = run('user', 'list');
    const why = 'reading it opens sluice.db-shm beside it to read and write, and this user cannot open that one';
    assert.deepEqual([list.status, list.stdout, list.stderr], [1, '', `sluice: ${file} cannot be written: permission denied, nor read: ${why}\n`]);
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
