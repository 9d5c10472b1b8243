import assert from 'node:assert/strict';
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FtpClient, SftpClient, outcome } from './helpers/file-clients.js';
import { TestServer } from './helpers/server.js';
import { call } from './helpers/ssh.js';

/*
 * A user who takes away their own read bit can give it back, as with
 * OpenSSH's sftp-server: mode and times are changed without opening the
 * node's content. Only visible when the server is not root (as
 * deploy/sluice.service runs it): root reads whatever the mode says.
 */
const root = process.getuid?.() === 0;

describe('chmod and times need no read access', { skip: root && 'as root every file is readable: run the suite unprivileged' }, () => {
  let srv: TestServer;
  let home: string;
  let sftp: SftpClient;
  let ftp: FtpClient;

  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'own', password: 'own password', args: ['--perms', 'all'] }] });
    home = srv.home('own');
    for (const f of ['s.txt', 'f.txt', 't.txt']) writeFileSync(join(home, f), 'data');
    for (const d of ['sd', 'fd']) mkdirSync(join(home, d), { mode: 0o755 });
    sftp = await SftpClient.connect(srv, 'own', 'own password');
    ftp = await FtpClient.connect('ftpes', srv, 'own', 'own password');
  });
  after(async () => {
    sftp.close();
    ftp.close();
    await srv.stop();
  });

  const mode = (p: string) => statSync(join(home, p)).mode & 0o777;

  it('SFTP SETSTAT 0111 then 0600 on a file, then its times', async () => {
    assert.equal(await outcome(call((cb) => sftp.sftp.chmod('/s.txt', 0o111, cb))), 'ok');
    assert.equal(mode('s.txt'), 0o111);
    assert.equal(await outcome(call((cb) => sftp.sftp.utimes('/s.txt', 1_000_000, 1_000_000, cb))), 'ok');
    assert.equal(statSync(join(home, 's.txt')).mtimeMs, 1_000_000_000);
    assert.equal(await outcome(call((cb) => sftp.sftp.chmod('/s.txt', 0o600, cb))), 'ok');
    assert.equal(mode('s.txt'), 0o600);
  });

  it('SFTP SETSTAT 0111 then 0700 on a directory', async () => {
    assert.equal(await outcome(call((cb) => sftp.sftp.chmod('/sd', 0o111, cb))), 'ok');
    assert.equal(await outcome(call((cb) => sftp.sftp.chmod('/sd', 0o700, cb))), 'ok');
    assert.equal(mode('sd'), 0o700);
  });

  it('FTP SITE CHMOD 111 then 600 on a file and a directory', async () => {
    for (const [p, back] of [['f.txt', '600'], ['fd', '700']] as const) {
      assert.equal((await ftp.cmd(`SITE CHMOD 111 ${p}`)).code, 200, p);
      assert.equal((await ftp.cmd(`SITE CHMOD ${back} ${p}`)).code, 200, p);
      assert.equal(mode(p), parseInt(back, 8), p);
    }
  });

  it('FTP MFMT on a 0111 file', async () => {
    assert.equal((await ftp.cmd('SITE CHMOD 111 t.txt')).code, 200);
    assert.equal((await ftp.cmd('MFMT 20200102030405 t.txt')).code, 213);
    assert.equal(statSync(join(home, 't.txt')).mtime.toISOString(), '2020-01-02T03:04:05.000Z');
  });
});
