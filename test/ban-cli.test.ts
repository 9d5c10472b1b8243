import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';


/*
 * `sluice ban add|remove` against the running server: every way of writing an
 * address bans what the server sees, and bad input is one clear line with
 * nothing written.
 */
describe('sluice ban: what is written is what the server matches', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start();
  });
  after(async () => {
    await srv.stop();
  });


  for (const [written, seen] of [
    ['::FFFF:127.0.0.6', '127.0.0.6'],
    ['::ffff:7f00:7', '127.0.0.7'],
    ['0:0:0:0:0:ffff:127.0.0.8', '127.0.0.8'],
  ] as const) {
    it(`an IPv4-mapped ${written} bans ${seen}, and the lower-case form lifts it`, { timeout: 60_000 }, async () => {
      const added = sluice(srv.dir, ['ban', 'add', written]);
      assert.equal(added.code, 0, added.stderr);
      assert.deepEqual(srv.bans(), [seen]);
      assert.equal(await RawFtp.greeting(srv.ftpPort, seen), 'closed', 'the ban is in force for the address connections come from');
      const removed = sluice(srv.dir, ['ban', 'remove', `::ffff:${seen}`]);
      assert.equal(removed.code, 0, removed.stdout + removed.stderr);
      assert.deepEqual(srv.bans(), []);
      assert.equal(await RawFtp.greeting(srv.ftpPort, seen), 220);
    });
  }

  it('a duration too long for a date is one clear line, and no ban is written', { timeout: 60_000 }, async () => {
    const r = sluice(srv.dir, ['ban', 'add', '127.0.0.9', '--for', '999999999d']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^sluice: --for: "999999999d" .+\n$/);
    assert.deepEqual(srv.bans(), []);
    assert.equal(await RawFtp.greeting(srv.ftpPort, '127.0.0.9'), 220);
  });
});
