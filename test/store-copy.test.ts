// copyStore: one Store into an empty other, read back through the Store
// interface; refused into a non-empty target; a failure half-way keeps nothing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { copyStore } from '../src/store/copy.js';
import { openPostgresStore } from '../src/store/postgres/store.js';
import { openSqliteStore } from '../src/store/sqlite/store.js';
import type { NewKey, UserRecord, UserSettings } from '../src/store/records.js';
import type { Store } from '../src/store/store.js';
import { sluice } from './helpers/cli.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';

const settings = (over: Partial<UserSettings> = {}): UserSettings => ({
  home: '/srv/x', enabled: true, expiresAt: null, protocols: ['sftp'], requireTls: false, requireKey: false,
  permissions: ['list'], quotaBytes: 0, quotaFiles: 0, rateUp: null, rateDown: null, scan: null, allowIps: [], denyIps: [],
  ...over,
});

const key = (n: number): NewKey => {
  const blob = Buffer.from(`ssh-ed25519 blob ${n}`);
  return { algorithm: 'ssh-ed25519', blob, fingerprint: `SHA256:${createHash('sha256').update(blob).digest('base64')}`, comment: `k${n}` };
};

/** Fill `s` with a bit of everything the Store keeps. */
async function fill(s: Store): Promise<void> {
  const alice = await s.users.create('Alice', '$argon2id$a', settings({
    home: '/srv/alice', protocols: ['ftps', 'sftp'], requireTls: true, permissions: ['list', 'download', 'upload'],
    quotaBytes: 10_000_000_000, quotaFiles: 100, rateUp: 0, rateDown: 4096, scan: true, allowIps: ['10.0.0.0/8'], denyIps: ['10.1.0.0/16'],
  }), [key(1), key(2)]);
  await s.users.setDirPermissions(alice.id, '/in', ['upload']);
  await s.users.setDirPermissions(alice.id, '/pub', ['list', 'download']);
  await s.users.addUsage(alice.id, 6_000_000_000, 42);
  const bob = await s.users.create('bob', null, settings({ enabled: false, expiresAt: new Date(Date.now() + 86_400_000), requireKey: true }), [key(3)]);
  await s.users.addUsage(bob.id, 5, 1);
  await s.users.create('zed', '$argon2id$z', settings());
  await s.bans.put('192.0.2.1', new Date(Date.now() + 3_600_000), 2, 'login failures');
  await s.bans.put('192.0.2.2', null, 1, 'added by an administrator');
  await s.bans.put('192.0.2.3', new Date(Date.now() - 1000), 4, 'login failures');
  await s.tokens.add('ops', createHash('sha256').update('token').digest());
}

/** What must survive a copy: everything but ids and the times the interface sets to now. */
const portable = (u: UserRecord) => {
  const { id: _id, createdAt: _c, updatedAt: _u, lastLoginAt: _l, ...rest } = u;
  return rest;
};

async function contents(s: Store) {
  const users = await s.users.all();
  return {
    users: users.map(portable),
    keys: await Promise.all(users.map(async (u) => (await s.users.keys(u.id)).map((k) => [k.algorithm, k.blob.toString('hex'), k.fingerprint, k.comment]))),
    bans: (await s.bans.active(0)).map((b) => [b.address, b.until?.getTime() ?? null, b.count, b.reason]),
  };
}

describe('copyStore', { skip: postgresMissing() ?? false }, () => {
  let server: TestPostgres;
  const dir = mkdtempSync(join(tmpdir(), 'sluice-copy-'));
  const opened: Store[] = [];
  const open = async () => {
    const s = await openPostgresStore(await server.createDatabase(), { poolSize: 2 });
    opened.push(s);
    return s;
  };
  before(async () => (server = await startPostgres()));
  after(async () => {
    await Promise.all(opened.map((s) => s.close()));
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('copies users with keys, rules, permissions and usage, and bans, into PostgreSQL', async () => {
    const [from, to] = [await open(), await open()];
    await fill(from);
    const report = await copyStore(from, to);
    assert.deepEqual(report, { users: 3, keys: 3, bans: 3, tokensNotCopied: ['ops'] });
    const [source, target] = [await contents(from), await contents(to)];
    assert.equal(target.users.length, 3);
    assert.deepEqual(target, source);
    assert.equal(to.bans.banned('192.0.2.1'), true);
    assert.equal(to.bans.banned('192.0.2.3'), false);
    // The copies are whole users: log-in by name in any case finds them with their password hash.
    assert.equal((await to.users.get('alice'))?.passwordHash, '$argon2id$a');
  });

  it('sluice store migrate-from-sqlite copies a real SQLite file into PostgreSQL, once', async () => {
    const file = join(dir, 'sluice.db');
    const sqlite = openSqliteStore(file);
    await fill(sqlite);
    const source = await contents(sqlite);
    await sqlite.close();
    const url = await server.createDatabase();
    const password = new URL(url).password;
    const r = sluice(dir, ['store', 'migrate-from-sqlite', file, '--to', url]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^copied 3 users \(3 keys\) and 3 bans from .+sluice\.db into postgres:\/\/sluice:\*\*\*@127\.0\.0\.1:\d+\/sluice_\d+\n/);
    assert.match(r.stdout, /admin tokens not copied, .+: ops\n$/);
    assert.ok(!(r.stdout + r.stderr).includes(password));
    const target = await openPostgresStore(url, { poolSize: 2 });
    opened.push(target);
    assert.deepEqual(await contents(target), source);
    // Once: the configured store (here from the environment) now holds users, and a second copy is refused.
    const again = sluice(dir, ['store', 'migrate-from-sqlite', file], undefined, { SLUICE_STORE_URL: url });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^sluice: the target store is not empty \(3 users, 3 bans, 0 admin tokens\)/);
    assert.deepEqual(await contents(target), source);
    const missing = sluice(dir, ['store', 'migrate-from-sqlite', join(dir, 'nope.db'), '--to', url]);
    assert.deepEqual([missing.code, missing.stderr], [2, `sluice: ${join(dir, 'nope.db')}: no such file\n`]);
    assert.equal(existsSync(join(dir, 'nope.db')), false);
  });

  it('refuses a target that is not empty, and writes nothing there', async () => {
    const [from, to] = [await open(), await open()];
    await fill(from);
    await to.bans.put('198.51.100.1', null, 1, 'already here');
    const before = await contents(to);
    await assert.rejects(copyStore(from, to), /the target store is not empty \(0 users, 1 bans, 0 admin tokens\)/);
    assert.deepEqual(await contents(to), before);
  });

  it('a failure half-way keeps nothing in the target', async () => {
    const from = await open();
    await fill(from);
    const url = await server.createDatabase();
    // A target that takes the first users and then refuses one: a real constraint, a real failure.
    const target = await openPostgresStore(url, { poolSize: 2 });
    opened.push(target);
    const sql = new pg.Client(url);
    await sql.connect();
    await sql.query("ALTER TABLE users ADD CONSTRAINT no_zed CHECK (name <> 'zed')");
    await sql.end();
    await assert.rejects(copyStore(from, target), /copy failed: .*no_zed.*; nothing of it was kept in the target/);
    assert.deepEqual(await contents(target), { users: [], keys: [], bans: [] });
  });
});
