import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { sluice } from './helpers/cli.js';
import { serverWithAdminToken } from './helpers/admin-server.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { until } from './helpers/probe.js';
import type { TestServer } from './helpers/server.js';

/*
 * The SQLite database held by another process past SQLite's busy timeout
 * (5 s): a CLI command, a backup, an operator's sqlite3 shell in a
 * transaction. Found by a review: `POST /users` answered 400 "could not add
 * user" (the request was sound), the removal of a ban 500, and every
 * request with a token 500 or 503, the monitoring included, because the
 * token's last use could not be noted.
 */
describe('admin API: the user store locked by another process', () => {
  let srv: TestServer;
  let api: AdminTarget;
  let token: string;
  before(async () => {
    ({ srv, api, token } = await serverWithAdminToken('127.0.0.62', { yaml: 'ftp:\n  tls: optional\nauth:\n  failureDelay: 0\n' }));
  });
  after(async () => {
    await srv.stop();
  });

  /** `run` while another connection holds the database's write lock. */
  async function whileLocked<T>(run: () => Promise<T>): Promise<T> {
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      db.exec('BEGIN IMMEDIATE');
      return await run();
    } finally {
      db.exec('ROLLBACK');
      db.close();
    }
  }

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
      for (let i = 0; i < 5; i++) {
        const c = await RawFtp.connect(srv.ftpPort, false, from).catch(() => null);
        if (!c) break;
        await c.read();
        await c.login('nobody', `guess ${i}`).catch(() => null);
        c.close();
      }
      assert.equal(await until(15_000, async () => (await RawFtp.greeting(srv.ftpPort, from)) !== 220), true, 'five failed logins: not banned');
      return adminRequest(api, 'DELETE', `/api/v1/bans/${from}`, { token });
    });
    assert.equal(lifted.status, 503, lifted.text);
    assert.match(lifted.text, new RegExp(`the ban in force on ${from.replaceAll('.', '\\.')} is lifted; its stored record could not be removed \\(database is locked\\): try again`));
    assert.equal(await RawFtp.greeting(srv.ftpPort, from), 220, 'the held ban was not lifted');
    assert.equal((await adminRequest(api, 'DELETE', `/api/v1/bans/${from}`, { token })).status, 200, 'the stored record then removed');
  });
});
