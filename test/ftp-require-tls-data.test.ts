import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RawFtp, readAll } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/**
 * A user made with --require-tls, on a server whose ftp.tls is optional (so
 * that other users may work in plain FTP): the user's login is refused
 * without TLS, and so must their files be. A client that does AUTH TLS and
 * logs in, then never sends PROT P (or sends PROT C), had its downloads and
 * uploads carried in clear: the flag guarded the password only. A user
 * whose protocols leave out plain `ftp` is held to the same.
 */
describe('--require-tls covers the data connections too', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\n',
      users: [
        { name: 'secret', password: 'secret password', args: ['--require-tls'] },
        // Not allowed plain FTP: the same holds without the flag (a review found PROT C moving its files in clear).
        { name: 'tlsonly', password: 'tlsonly password', args: ['--protocols', 'ftps,sftp'] },
        { name: 'plain', password: 'plain password' },
      ],
    });
    writeFileSync(join(srv.home('secret'), 'payroll.csv'), 'CONFIDENTIAL\n');
    writeFileSync(join(srv.home('tlsonly'), 'payroll.csv'), 'CONFIDENTIAL\n');
    writeFileSync(join(srv.home('plain'), 'notes.txt'), 'public\n');
  });
  after(() => srv.stop());

  /** AUTH TLS and a login, then whatever PROT the case asks for (none: the default, C). */
  async function tlsLogin(user: string, password: string, prot: 'C' | null): Promise<RawFtp> {
    const c = await RawFtp.connect(srv.ftpPort);
    assert.equal((await c.read())?.code, 220);
    await c.startTls();
    assert.equal((await c.login(user, password)).code, 230);
    assert.equal((await c.cmd('TYPE I')).code, 200);
    if (prot) {
      assert.equal((await c.cmd('PBSZ 0')).code, 200);
      assert.equal((await c.cmd(`PROT ${prot}`)).code, 200);
    }
    return c;
  }

  /** RETR over a clear data connection: the reply to RETR and what arrived in clear. */
  async function clearRetr(c: RawFtp, path: string): Promise<{ code: number | undefined; bytes: string }> {
    const pasv = await c.passive(false);
    c.send(`RETR ${path}\r\n`);
    const data = await pasv.open().catch(() => null);
    // The refusal ends the data connection: reset, perhaps, as the server closes it.
    data?.on('error', () => undefined);
    const first = await c.read();
    const bytes = data && first?.code === 150 ? (await readAll(data)).toString() : '';
    data?.destroy();
    let last = first;
    while (last && last.code < 200) last = await c.read();
    return { code: last?.code, bytes };
  }

  for (const [user, who] of [['secret', 'a require-TLS user'], ['tlsonly', 'a user not allowed plain FTP']] as const) {
    for (const prot of [null, 'C'] as const) {
      it(`refuses a clear data connection to ${who} (${prot === null ? 'no PROT sent' : 'PROT C'})`, async () => {
        const c = await tlsLogin(user, `${user} password`, prot);
        try {
          const r = await clearRetr(c, 'payroll.csv');
          assert.equal(r.bytes, '', 'the file went over the wire in clear');
          assert.ok(r.code !== undefined && r.code >= 400, `RETR answered ${r.code}`);
          // Under PROT P it goes through.
          assert.equal((await c.cmd('PBSZ 0')).code, 200);
          assert.equal((await c.cmd('PROT P')).code, 200);
          const pasv = await c.passive(true);
          c.send('RETR payroll.csv\r\n');
          const data = await pasv.open();
          assert.equal((await c.read())?.code, 150);
          assert.equal((await readAll(data)).toString(), 'CONFIDENTIAL\n');
          assert.equal((await c.read())?.code, 226);
        } finally {
          c.close();
        }
      });
    }
  }

  it('a user without the flag still may use PROT C', async () => {
    const c = await tlsLogin('plain', 'plain password', 'C');
    try {
      const r = await clearRetr(c, 'notes.txt');
      assert.equal(r.code, 226);
      assert.equal(r.bytes, 'public\n');
    } finally {
      c.close();
    }
  });
});
