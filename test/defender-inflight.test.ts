import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

const ATTACKER = '127.0.0.51';

/*
 * The ban must stop the guessing, not only new connections: an address that
 * opened its connections first and then failed on them one after another got
 * auth.maxTries password checks on every connection still open after the ban.
 */
describe('defender: connections opened before the ban guess no more after it', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\nauth:\n  failureDelay: 0\n',
      users: [{ name: 'carol', password: 'carol password', args: ['--protocols', 'ftp,ftps,sftp'] }],
    });
  });
  after(async () => {
    await srv.stop();
  });

  it('five failures, then every open connection is refused without a password check', { timeout: 120_000 }, async () => {
    const conns: RawFtp[] = [];
    for (let i = 0; i < 6; i++) {
      const c = await RawFtp.connect(srv.ftpPort, false, ATTACKER);
      assert.equal((await c.read())?.code, 220);
      conns.push(c);
    }
    const codes: number[][] = [];
    for (const c of conns) {
      const mine: number[] = [];
      for (let k = 0; k < 3; k++) {
        const r = await c.login('carol', `wrong ${codes.length} ${k}`);
        mine.push(r.code);
        if (r.code !== 530) break;
      }
      codes.push(mine);
      c.close();
    }
    // Three tries on the first connection, the ban at the fifth failure on the second, then nothing.
    assert.deepEqual(codes, [[530, 530, 421], [530, 421], [421], [421], [421], [421]]);
    // A sixth check would have been recorded before its reply: a failure from another address, made now,
    // is recorded after it, and waited for.
    const later = await RawFtp.connect(srv.ftpPort, false, '127.0.0.52');
    assert.equal((await later.read())?.code, 220);
    assert.equal((await later.login('carol', 'wrong again')).code, 530);
    later.close();
    const failed = (await srv.auditUntil((l) => l.event === 'login-failed' && l.ip === '127.0.0.52')).filter((l) => l.event === 'login-failed' && l.ip === ATTACKER);
    assert.equal(failed.length, 5, 'five password checks, no more');
  });
});
