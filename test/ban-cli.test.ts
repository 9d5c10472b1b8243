import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/** The FTP greeting's code for a client from `from`, or 'closed' when refused before it. */
async function greeting(port: number, from: string): Promise<number | 'closed'> {
  const c = await RawFtp.connect(port, false, from).catch(() => null);
  if (!c) return 'closed';
  const r = await c.read(5000).catch(() => null);
  c.close();
  return r?.code ?? 'closed';
}

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

  const bans = () => (JSON.parse(sluice(srv.dir, ['ban', 'list', '--json']).stdout) as { address: string }[]).map((b) => b.address);

  for (const [written, seen] of [
    ['::FFFF:127.0.0.6', '127.0.0.6'],
    ['::ffff:7f00:7', '127.0.0.7'],
    ['0:0:0:0:0:ffff:127.0.0.8', '127.0.0.8'],
  ] as const) {
    it(`an IPv4-mapped ${written} bans ${seen}, and the lower-case form lifts it`, { timeout: 60_000 }, async () => {
      const added = sluice(srv.dir, ['ban', 'add', written]);
      assert.equal(added.code, 0, added.stderr);
      assert.deepEqual(bans(), [seen]);
      assert.equal(await greeting(srv.ftpPort, seen), 'closed', 'the ban is in force for the address connections come from');
      const removed = sluice(srv.dir, ['ban', 'remove', `::ffff:${seen}`]);
      assert.equal(removed.code, 0, removed.stdout + removed.stderr);
      assert.deepEqual(bans(), []);
      assert.equal(await greeting(srv.ftpPort, seen), 220);
    });
  }

  it('a duration too long for a date is one clear line, and no ban is written', { timeout: 60_000 }, async () => {
    const r = sluice(srv.dir, ['ban', 'add', '127.0.0.9', '--for', '999999999d']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^sluice: --for: "999999999d" .+\n$/);
    assert.deepEqual(bans(), []);
    assert.equal(await greeting(srv.ftpPort, '127.0.0.9'), 220);
  });
});
