import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import argon2 from 'argon2';
import Database from 'better-sqlite3';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * An administrator who learns that a password was stolen changes it and
 * ends the user's sessions (SECURITY.md). Found by a review: a login that
 * had read the user and was still verifying the old password when the end
 * came had no session yet for the end to find; it opened one after the end
 * and went on. A login that read its user before an end of the user's
 * sessions is now refused as they are.
 */
/** How long a PASS verified with the costly hash below may take on a loaded machine. */
const SLOW_REPLY_MS = 45_000;

describe("a login under way when its user's sessions are ended", () => {
  let srv: TestServer;
  let api: AdminTarget;
  const password = 'alice password';
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\n',
      env: { SLUICE_ADMIN_LISTEN: './admin.sock' },
      users: [{ name: 'alice', password }],
    });
    api = { socketPath: join(srv.dir, 'admin.sock') };
    // A hash of costly parameters (an older or a stricter setting: any argon2id hash verifies), so that the
    // login's verification takes seconds and the end surely comes during it.
    const slow = await argon2.hash(password, { type: argon2.argon2id, memoryCost: 19456, timeCost: 240, parallelism: 1 });
    const db = new Database(join(srv.dir, 'data', 'sluice.db'));
    try {
      db.pragma('busy_timeout = 5000');
      db.prepare("UPDATE users SET password_hash = ? WHERE name = 'alice'").run(slow);
    } finally {
      db.close();
    }
  });
  after(() => srv.stop());

  it('is refused, not let in after the end', { timeout: 60_000 }, async () => {
    const c = await RawFtp.connect(srv.ftpPort);
    try {
      assert.equal((await c.read())?.code, 220);
      assert.equal((await c.cmd('USER alice')).code, 331);
      const began = performance.now();
      // The verification takes seconds idle, more than RawFtp's 10 s on a loaded machine (a CI run beside other work).
      const login = c.cmd(`PASS ${password}`, SLOW_REPLY_MS);
      // The user is read within milliseconds of PASS, its verification then takes seconds (see before): the end
      // comes between the two. A fixed wait, since nothing outside the server shows the read.
      await sleep(1000);
      const ended = await adminRequest(api, 'DELETE', '/api/v1/users/alice/sessions');
      assert.equal(ended.status, 200, ended.text);
      const reply = await login;
      assert.ok(performance.now() - began > 1500, 'the verification outlasted the end (else the test proves nothing)');
      assert.notEqual(reply.code, 230, `logged in after its sessions were ended: ${reply.code} ${reply.text}`);
      assert.match(`${reply.code} ${reply.text}`, /^530 /);
    } finally {
      c.close();
    }
    // A login after the end, with the same password, is let in: the end shuts out only what was under way.
    const again = await RawFtp.connect(srv.ftpPort);
    try {
      await again.read();
      await again.cmd('USER alice');
      assert.equal((await again.cmd(`PASS ${password}`, SLOW_REPLY_MS)).code, 230);
    } finally {
      again.close();
    }
  });
});
