import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { postgresMissing, startPostgres, type TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

/*
 * Every text of a request the PostgreSQL store is asked about must be one
 * it can take: a NUL byte in a query parameter makes pg's query fail, which
 * the API answered 500 (an internal error, logged as one) for what is the
 * client's mistake. The user name was checked so (admin-postgres); the key
 * fingerprint of DELETE /users/:name/keys/:fingerprint was not.
 */
const skip = postgresMissing();
if (skip) console.log(`# ${skip}`);

describe('admin API on PostgreSQL: a NUL byte in a key fingerprint', { skip: skip ?? false, timeout: 120_000 }, () => {
  let db: TestPostgres;
  let srv: TestServer;
  let api: AdminTarget;

  before(async () => {
    db = await startPostgres();
    srv = await TestServer.start({ env: { SLUICE_STORE_URL: db.url, SLUICE_ADMIN_LISTEN: './admin.sock' } });
    api = { socketPath: join(srv.dir, 'admin.sock') };
  });
  after(async () => {
    await srv?.stop();
    await db?.stop();
  });

  it('DELETE /users/:name/keys/<a fingerprint with %00> is a 400, not a 500, and the user keeps its state; a key it does not have is a 404', async () => {
    const made = await adminRequest(api, 'POST', '/api/v1/users', { body: { name: 'kim', password: 'kim-secret-1' } });
    assert.equal(made.status, 201, made.text);
    const r = await adminRequest(api, 'DELETE', '/api/v1/users/kim/keys/SHA256%3Aab%00cd');
    assert.equal(r.status, 400, r.text);
    assert.equal((await adminRequest(api, 'GET', '/api/v1/users/kim')).status, 200);
    const unknown = await adminRequest(api, 'DELETE', '/api/v1/users/kim/keys/SHA256%3Aabcd');
    assert.equal(unknown.status, 404, unknown.text);
    assert.match((unknown.json as { error: string }).error, /kim has no key SHA256:abcd/);
  });
});
