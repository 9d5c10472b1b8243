import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { TestServer } from './helpers/server.js';

/*
 * Two administrators add the same name at once, each with a home whose
 * parents do not exist yet. Both pass the "name free" check (the password's
 * hash takes milliseconds), both make their home; the store takes one, and
 * the other's request is refused. The refused request must take away every
 * directory it made, not only the home itself: its parents were left behind.
 */
describe('a user add refused by the store takes away the directories it made', () => {
  let srv: TestServer;
  let api: AdminTarget;

  before(async () => {
    srv = await TestServer.start({ env: { SLUICE_ADMIN_LISTEN: './admin.sock' } });
    api = { socketPath: join(srv.dir, 'admin.sock') };
  });
  after(async () => {
    await srv?.stop();
  });

  it('two POST /users of one name at once: one 201, and only the winner’s directories exist', { timeout: 60_000 }, async () => {
    for (let round = 0; round < 3; round++) {
      const tops = [0, 1].map((i) => join(srv.dir, `r${round}-${i}`));
      const replies = await Promise.all(
        tops.map((top) => adminRequest(api, 'POST', '/api/v1/users', { body: { name: `race${round}`, password: 'race-secret-1', home: join(top, 'deep', 'home') } })),
      );
      const statuses = replies.map((r) => r.status);
      // Refused by the check before anything is made, or by the store after both made their homes: 400 either way.
      assert.deepEqual([...statuses].sort(), [201, 400], replies.map((r) => r.text).join('\n'));
      const winner = statuses.indexOf(201);
      const loser = 1 - winner;
      assert.ok(existsSync(join(tops[winner] as string, 'deep', 'home')), 'the winner’s home');
      assert.ok(!existsSync(tops[loser] as string), `the refused request left ${tops[loser]} behind`);
    }
  });
});
