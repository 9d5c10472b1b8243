import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { freePort, TestServer } from './helpers/server.js';

/*
 * `sluice ban list` asks the running server's admin API (which also lists the
 * bans its defender holds unstored), and reads the store when it cannot ask:
 * before, it read the store only and needed no token and no reachable API,
 * and the first version through the API failed without them (found by a
 * review of 5aeb4f3: both cases below exited 1).
 */

describe('sluice ban list with the admin API on TCP', () => {
  let srv: TestServer;
  let env: NodeJS.ProcessEnv;
  before(async () => {
    const port = await freePort();
    env = { SLUICE_ADMIN_LISTEN: `127.0.0.1:${port}` };
    srv = await TestServer.start({ env });
  });
  after(async () => {
    await srv.stop();
  });

  it('without SLUICE_ADMIN_TOKEN still lists the stored bans (as before the change)', { timeout: 60_000 }, async () => {
    const added = sluice(srv.dir, ['ban', 'add', '192.0.2.41'], '', { SLUICE_ADMIN_LISTEN: '' });
    assert.equal(added.code, 0, added.stderr);
    const r = sluice(srv.dir, ['ban', 'list', '--json'], '', env);
    assert.equal(r.code, 0, `ban list failed: ${r.stderr}`);
    assert.deepEqual((JSON.parse(r.stdout) as { address: string }[]).map((b) => b.address), ['192.0.2.41']);
  });

  it('from a host the API refuses (127.0.0.1 banned) still lists the bans, as the ECONNRESET message tells the user to run it', { timeout: 60_000 }, async () => {
    const token = sluice(srv.dir, ['admin', 'token', 'create', 'lister']).stdout.trim();
    const added = sluice(srv.dir, ['ban', 'add', '127.0.0.1'], '', { SLUICE_ADMIN_LISTEN: '' });
    assert.equal(added.code, 0, added.stderr);
    try {
      const r = sluice(srv.dir, ['ban', 'list'], '', { ...env, SLUICE_ADMIN_TOKEN: token });
      assert.equal(r.code, 0, `ban list failed: ${r.stderr}`);
      assert.match(r.stdout, /127\.0\.0\.1 /);
    } finally {
      sluice(srv.dir, ['ban', 'remove', '127.0.0.1'], '', { SLUICE_ADMIN_LISTEN: '' });
    }
  });
});

describe('sluice ban list --json: the same through the API as from the store', () => {
  let srv: TestServer;
  const SOCKET = { SLUICE_ADMIN_LISTEN: './admin.sock' };
  before(async () => {
    srv = await TestServer.start({ env: SOCKET });
  });
  after(async () => {
    await srv.stop();
  });

  it('a timed and an untimed ban', { timeout: 60_000 }, async () => {
    assert.equal(sluice(srv.dir, ['ban', 'add', '192.0.2.51', '--for', '1h'], '', SOCKET).code, 0);
    assert.equal(sluice(srv.dir, ['ban', 'add', '2001:db8:1:2::/64'], '', SOCKET).code, 0);
    const api = sluice(srv.dir, ['ban', 'list', '--json'], '', SOCKET);
    const store = sluice(srv.dir, ['ban', 'list', '--json'], '', { SLUICE_ADMIN_LISTEN: '' });
    assert.equal(api.code, 0, api.stderr);
    assert.equal(store.code, 0, store.stderr);
    assert.deepEqual(JSON.parse(api.stdout), JSON.parse(store.stdout));
    assert.equal(api.stdout, store.stdout);
  });
});
