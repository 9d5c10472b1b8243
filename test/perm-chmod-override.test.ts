import assert from 'node:assert/strict';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { FtpClient, SftpClient, outcome } from './helpers/file-clients.js';
import { TestServer } from './helpers/server.js';
import { call } from './helpers/ssh.js';

/*
 * A directory the administrator gave rights of its own keeps its mode, as the
 * home does: a user with chmod in the home could make the read-only /pub or the
 * drop box 0000 (shutting the server out) or 0777 (open to every local account).
 */
describe('configured directories keep their mode', () => {
  let srv: TestServer;
  let home: string;
  let sftp: SftpClient;
  let ftp: FtpClient;

  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'cm', password: 'cm password', args: ['--perms', 'all'] }] });
    for (const [dir, perms] of [['/pub', 'list,download'], ['/a/drop', 'upload']] as const) {
      assert.equal(sluice(srv.dir, ['user', 'perm', 'cm', dir, perms], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    }
    home = srv.home('cm');
    for (const d of ['pub', 'a/drop', 'mine']) mkdirSync(join(home, d), { recursive: true, mode: 0o755 });
    sftp = await SftpClient.connect(srv, 'cm', 'cm password');
    ftp = await FtpClient.connect('ftpes', srv, 'cm', 'cm password');
  });
  after(async () => {
    sftp.close();
    ftp.close();
    await srv.stop();
  });

  const mode = (d: string) => statSync(join(home, d)).mode & 0o777;

  it('SFTP SETSTAT and FTP SITE CHMOD are refused on an override and on its parent', async () => {
    for (const [p, m] of [['/pub', 0o000], ['/a/drop', 0o777], ['/a', 0o000]] as const) {
      assert.match(await outcome(call((cb) => sftp.sftp.chmod(p, m, cb))), /^3 /, `SETSTAT ${p}`);
      assert.equal((await ftp.cmd(`SITE CHMOD ${m.toString(8).padStart(3, '0')} ${p}`)).code, 550, `SITE CHMOD ${p}`);
    }
    for (const d of ['pub', 'a/drop', 'a']) assert.equal(mode(d), 0o755, d);
  });

  it('other directories can still be chmod-ed', async () => {
    assert.equal(await outcome(call((cb) => sftp.sftp.chmod('/mine', 0o700, cb))), 'ok');
    assert.equal((await ftp.cmd('SITE CHMOD 750 /mine')).code, 200);
    assert.equal(mode('mine'), 0o750);
  });
});
