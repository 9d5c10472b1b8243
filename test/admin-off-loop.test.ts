import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { serverWithAdminToken } from './helpers/admin-server.js';
import type { TestServer } from './helpers/server.js';

/*
 * User administration runs in the serving process (the admin API): its file
 * system calls (a home looked up, made, refused because a removed user left
 * files in it, unmade) were synchronous, so a home on a slow or hung network
 * mount stopped every session of the process with it. Node's --trace-sync-io
 * names each synchronous call made after the start.
 */
describe('user administration off the event loop', () => {
  let srv: TestServer;
  let api: AdminTarget;
  let token: string;
  before(async () => {
    ({ srv, api, token } = await serverWithAdminToken('127.0.0.64', { nodeArgs: ['--trace-sync-io'] }));
  });
  after(async () => {
    await srv.stop();
  });

  it('adding, listing and removing users, changing a home, a refused add and a ban make no synchronous file system call', { timeout: 60_000 }, async () => {
    const before = srv.stderr.length;
    const add = (body: Record<string, unknown>) => adminRequest(api, 'POST', '/api/v1/users', { token, body });
    assert.equal((await add({ name: 'ann', password: 'ann password 1' })).status, 201);
    const elsewhere = join(srv.dir, 'elsewhere', 'bob');
    assert.equal((await add({ name: 'bob', password: 'bob password 1', home: elsewhere })).status, 201);
    const moved = await adminRequest(api, 'PATCH', '/api/v1/users/bob', { token, body: { home: join(srv.dir, 'moved', 'bob') } });
    assert.equal(moved.status, 200, moved.text);
    // Inside ann's home: refused by the store's check after the home was made, which is then unmade.
    const nested = await add({ name: 'cat', password: 'cat password 1', home: join(srv.home('ann'), 'cat') });
    assert.equal(nested.status, 400, nested.text);
    assert.equal((await adminRequest(api, 'GET', '/api/v1/users', { token })).status, 200);
    assert.equal((await adminRequest(api, 'DELETE', '/api/v1/users/bob', { token })).status, 200);
    assert.equal((await adminRequest(api, 'POST', '/api/v1/bans', { token, body: { address: '192.0.2.7', seconds: 60 } })).status, 201);
    const sync = srv.stderr.slice(before).split(/(?=\(node:\d+\) WARNING: Detected use of sync API)/).filter((w) => w.includes('Detected use of sync API'));
    assert.deepEqual(sync, [], 'synchronous calls during the changes');
  });
});
