import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { sluice, sluiceAsync } from './helpers/cli.js';
import { serverWithAdminToken } from './helpers/admin-server.js';
import { loggedIn, RawFtp, startUpload } from './helpers/ftp-raw.js';
import { until } from './helpers/probe.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { TestServer } from './helpers/server.js';

/*
 * The SQLite database held by another process: a CLI command, a backup, an
 * operator's sqlite3 shell in a transaction. Found by a review: `POST /users`
 * answered 400 "could not add user" (the request was sound), the removal of
 * a ban 500, and every request with a token 500 or 503, the monitoring
 * included, because the token's last use could not be noted. And SQLite's
 * busy timeout (5 s) was a wait on the event loop: each write froze every
 * session of the process for as long as the lock was held, 5 s at a time.
 */
describe('the user store locked by another process', () => {
  let srv: TestServer;
  let api: AdminTarget;
  let token: string;
  before(async () => {
    ({ srv, api, token } = await serverWithAdminToken('127.0.0.62', {
      yaml: 'ftp:\n  tls: optional\nauth:\n  failureDelay: 0\n',
      users: [{ name: 'ann', password: 'ann password 1' }],
    }));
  });
  after(async () => {
    await srv.stop();
  });

  /** Another connection's hold of the database's write lock, until `release`. */
  function lock(): { release: () => void } {
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    db.exec('BEGIN IMMEDIATE');
    return {
      release: () => {
        if (!db.open) return;
        db.exec('ROLLBACK');
        db.close();
      },
    };
  }

  /** `run` while another connection holds the database's write lock. */
  async function whileLocked<T>(run: () => Promise<T>): Promise<T> {
    const held = lock();
    try {
      return await run();
    } finally {
      held.release();
    }
  }

  /** How long a NOOP on `c` takes to be answered, in ms. */
  async function noopMs(c: RawFtp): Promise<number> {
    const t = performance.now();
    assert.equal((await c.cmd('NOOP')).code, 200);
    return performance.now() - t;
  }

  it('a write waits for the lock between tries, off the event loop: sessions and requests are served meanwhile, and it goes through once the lock is let go', { timeout: 60_000 }, async () => {
    const ftp = await loggedIn(srv.ftpPort, 'ann', 'ann password 1');
    const held = lock();
    try {
      const adding = adminRequest(api, 'POST', '/api/v1/users', { token, body: { name: 'waited', password: 'waited password 1' } });
      const letGo = sleep(2500).then(held.release);
      await sleep(300);
      const t = performance.now();
      const listed = await adminRequest(api, 'GET', '/api/v1/users', { token });
      const listMs = performance.now() - t;
      const noop = await noopMs(ftp);
      assert.equal(listed.status, 200, listed.text);
      // On the code before, both waited for the write's busy timeout, until the lock was let go (2.2 s more).
      assert.ok(listMs < 1000 && noop < 1000, `while a write waited for the lock: a request took ${Math.round(listMs)} ms, a NOOP ${Math.round(noop)} ms`);
      const added = await adding;
      assert.equal(added.status, 201, `the write once the lock was let go (2.5 s, within its patience of 5 s): ${added.text}`);
      await letGo;
    } finally {
      held.release();
      ftp.close();
    }
    assert.equal(sluice(srv.dir, ['user', 'show', 'waited']).code, 0, 'the user was not stored');
  });

  it("an upload's usage waits in memory, the sessions served, and is written once the lock is let go", { timeout: 60_000 }, async () => {
    const ftp = await loggedIn(srv.ftpPort, 'ann', 'ann password 1');
    // What the server has written, read from the file (the CLI opens the store for writing: it waits for the lock).
    const used = () => {
      const db = new Database(join(srv.dir, 'data', 'sluice.db'), { readonly: true });
      try {
        const row = db.prepare("SELECT used_bytes AS b, used_files AS f FROM users WHERE name = 'ann'").get() as { b: number; f: number };
        return `${row.b}/${row.f}`;
      } finally {
        db.close();
      }
    };
    const before = used();
    const held = lock();
    try {
      const data = await startUpload(ftp, 'locked.bin');
      data.end(Buffer.alloc(1000, 7));
      assert.equal((await ftp.read())?.code, 226, 'the upload while the store is locked');
      // The batched write is tried within 100 ms and refused: before, each try froze the process for the
      // busy timeout (5 s), every second. Past 5 s the server says so.
      let worst = 0;
      for (const end = Date.now() + 6000; Date.now() < end; await sleep(50)) worst = Math.max(worst, await noopMs(ftp));
      assert.ok(worst < 1000, `the slowest NOOP while the usage waited for the lock: ${Math.round(worst)} ms`);
      assert.equal(used(), before, 'written while the lock was held?');
      assert.match(srv.stderr, /usage and last logins not written to SQLite yet, trying again until they are: database is locked/);
    } finally {
      held.release();
      ftp.close();
    }
    const [bytes, files] = before.split('/').map(Number);
    assert.equal(await until(5000, async () => used() === `${bytes! + 1000}/${files! + 1}`), true, `the usage after the lock was let go: ${used()}, before ${before}`);
    // Said once the write has gone through: it may reach the test's pipe a moment after the row does.
    const late = /usage and last logins written to SQLite, \d+ s late/;
    assert.equal(await until(5000, async () => late.test(srv.stderr)), true, srv.stderr);
    // Once by each process that keeps some (with workers, the one of the login and the one of the ledgers).
    const sayers = [...srv.stderr.matchAll(/\(node:(\d+)\) SluiceStoreWarning: usage and last logins not written to SQLite yet/g)].map((m) => m[1]);
    assert.ok(sayers.length > 0 && new Set(sayers).size === sayers.length, `said once by each process, though tried again and again: ${sayers.join(', ')}`);
  });

  it('a CLI command that only reads opens the store without the lock: answered at once', { timeout: 60_000 }, async () => {
    const shown = await whileLocked(async () => {
      const t = performance.now();
      const r = await sluiceAsync(srv.dir, ['user', 'show', 'ann']);
      return { ...r, ms: performance.now() - t };
    });
    // Before, each migration's transaction took the write lock, applied or not: 5 s, then "database is locked".
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^name\s+ann$/m);
    assert.ok(shown.ms < 3000, `user show took ${Math.round(shown.ms)} ms`);
  });

  it('writes are answered 503 with Retry-After and change nothing; reads and the token still work; the writes go through after', { timeout: 60_000 }, async () => {
    assert.equal((await adminRequest(api, 'POST', '/api/v1/bans', { token, body: { address: '10.9.0.2' } })).status, 201);
    const [added, lifted, listed] = await whileLocked(() => Promise.all([
      adminRequest(api, 'POST', '/api/v1/users', { token, body: { name: 'late', password: 'late password 1' } }),
      adminRequest(api, 'DELETE', '/api/v1/bans/10.9.0.2', { token }),
      adminRequest(api, 'GET', '/api/v1/bans', { token }),
    ]));
    for (const reply of [added, lifted]) {
      assert.equal(reply.status, 503, reply.text);
      assert.equal(reply.headers['retry-after'], '5');
      assert.match(reply.text, /the user store cannot be written now \(database is locked\); nothing was changed: try again/);
    }
    assert.equal(listed.status, 200, `a read with a token while the store is locked: ${listed.text}`);
    assert.ok((listed.json as { address: string }[]).some((b) => b.address === '10.9.0.2'), listed.text);
    assert.notEqual(sluice(srv.dir, ['user', 'show', 'late']).code, 0, 'the refused user was stored');
    assert.match(srv.log, /admin API request not served now: the store refused the write/);
    assert.equal((await adminRequest(api, 'POST', '/api/v1/users', { token, body: { name: 'late', password: 'late password 1' } })).status, 201);
    assert.equal((await adminRequest(api, 'DELETE', '/api/v1/bans/10.9.0.2', { token })).status, 200);
  });

  // Found by a review: the removal lifted the ban held in memory, then answered the store's refusal with
  // "nothing was changed".
  it('a ban the defender holds (the store refused it) is lifted, and the 503 of its stored record says so', { timeout: 60_000 }, async () => {
    const from = '127.0.0.63';
    // A past ban of the address, stored: its row stays once it has run out.
    assert.equal((await adminRequest(api, 'POST', '/api/v1/bans', { token, body: { address: from, seconds: 1 } })).status, 201);
    assert.equal(await until(5000, async () => (await RawFtp.greeting(srv.ftpPort, from)) === 220), true, 'the ban of 1 s did not run out');
    const lifted = await whileLocked(async () => {
      let fifth: Promise<unknown> = Promise.resolve();
      for (let i = 0; i < 5; i++) {
        const c = await RawFtp.connect(srv.ftpPort, false, from);
        await c.read();
        const failed = c.login('nobody', `guess ${i}`).catch(() => null).finally(() => c.close());
        if (i < 4) await failed;
        else fifth = failed;
      }
      // In force at once, while its write waits for the lock: on the code before, the write's wait froze the
      // process (5 s); without the ban held first, the address was let in while it waited.
      const t = performance.now();
      const banned = await until(2000, async () => (await RawFtp.greeting(srv.ftpPort, from)) !== 220);
      const ms = performance.now() - t;
      assert.ok(banned && ms < 2000, `five failed logins: banned ${banned}, after ${Math.round(ms)} ms`);
      const reply = await adminRequest(api, 'DELETE', `/api/v1/bans/${from}`, { token });
      await fifth;
      return reply;
    });
    assert.equal(lifted.status, 503, lifted.text);
    assert.match(lifted.text, new RegExp(`the ban in force on ${from.replaceAll('.', '\\.')} is lifted; its stored record could not be removed \\(database is locked\\): try again`));
    assert.equal(await RawFtp.greeting(srv.ftpPort, from), 220, 'the held ban was not lifted');
    assert.equal((await adminRequest(api, 'DELETE', `/api/v1/bans/${from}`, { token })).status, 200, 'the stored record then removed');
  });
});

describe('a stop while the user store is locked by another process', () => {
  it("a second SIGTERM after the drain is said and waited out: the usage not yet written is written once the lock goes, and the process exits 0", { timeout: 60_000 }, async () => {
    const srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'ann', password: 'ann password 1' }] });
    const db = join(srv.dir, 'data', 'sluice.db');
    const used = () => {
      const r = new Database(db, { readonly: true });
      try {
        return (r.prepare("SELECT used_bytes AS b FROM users WHERE name = 'ann'").get() as { b: number }).b;
      } finally {
        r.close();
      }
    };
    const held = new Database(db);
    try {
      const child = srv.process!;
      const exited = new Promise<[number | null, string | null]>((r) => child.once('exit', (code, signal) => r([code, signal])));
      const ftp = await loggedIn(srv.ftpPort, 'ann', 'ann password 1');
      held.exec('BEGIN IMMEDIATE');
      const data = await startUpload(ftp, 'late.bin');
      data.end(Buffer.alloc(1000, 7));
      assert.equal((await ftp.read())?.code, 226);
      srv.signal('SIGTERM');
      await srv.logs(/drained: 1 idle sessions ended/);
      // The close now waits for the lock to write the upload's usage: on the code before, this killed the process.
      srv.signal('SIGTERM');
      await sleep(500);
      assert.equal(child.signalCode, null, 'the second SIGTERM killed the process');
      assert.equal(used(), 0, 'the usage was written while the lock was held?');
      await srv.logs(/SIGTERM while closing: writing the audit trail's and the store's last changes first/);
      held.exec('ROLLBACK');
      assert.deepEqual(await exited, [0, null], `the stop: ${srv.stderr.slice(-1000)}`);
      assert.equal(used(), 1000, 'the usage of the upload before the stop');
    } finally {
      held.close();
      await srv.stop();
    }
  });
});
