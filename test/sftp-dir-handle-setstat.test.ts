import assert from 'node:assert/strict';
import { mkdirSync, renameSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { PERMISSIONS } from '../src/session/permissions.js';
import { InProcessServer } from './helpers/in-process.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * FSETSTAT on a directory handle changes the directory opened. Found by the
 * paths review: it went by the handle's path, following a final symlink, so
 * once the directory was moved and a symlink put in its place (another
 * session of the same user), the symlink's target was changed: a directory
 * the handle never named. As a listing is read, a directory handle is
 * changed only while the directory is still where its rights were checked.
 */
describe('FSETSTAT on a directory handle', () => {
  const PASSWORD = 'dir handle password';
  let srv: InProcessServer;
  let conn: ssh2.Client;
  let sftp: ssh2.SFTPWrapper;
  let home: string;
  const mode = (name: string) => statSync(join(home, name)).mode & 0o777;

  before(async () => {
    srv = await InProcessServer.start();
    // chmod is not among the default rights.
    await srv.base.admin.add({ name: 'lister', password: PASSWORD, keys: [], permissions: [...PERMISSIONS] });
    home = join(srv.dir, 'data', 'homes', 'lister');
    conn = await sshConnect({ port: srv.sftpPort, username: 'lister', password: PASSWORD });
    sftp = await sftpOf(conn);
    // The home is made at the first login; a directory made through it makes sure it is there.
    await call((cb) => sftp.mkdir('/here', cb));
  });
  after(async () => {
    conn.end();
    await srv.close();
  });

  it('changes the directory opened, in place', async () => {
    const handle = await call<Buffer>((cb) => sftp.opendir('/here', cb));
    try {
      await call((cb) => sftp.fsetstat(handle, { mode: 0o700 }, cb));
      const when = new Date('2001-02-03T04:05:06Z');
      await call((cb) => sftp.fsetstat(handle, { atime: when, mtime: when }, cb));
      assert.equal(mode('here'), 0o700);
      assert.equal(statSync(join(home, 'here')).mtimeMs, when.getTime());
    } finally {
      await call((cb) => sftp.close(handle, cb));
    }
  });

  it('never changes what a symlink put in the directory\'s place leads to', async () => {
    mkdirSync(join(home, 'opened'), { mode: 0o755 });
    mkdirSync(join(home, 'victim'), { mode: 0o755 });
    const handle = await call<Buffer>((cb) => sftp.opendir('/opened', cb));
    try {
      renameSync(join(home, 'opened'), join(home, 'opened.moved'));
      symlinkSync('victim', join(home, 'opened'));
      await assert.rejects(call((cb) => sftp.fsetstat(handle, { mode: 0o700 }, cb)), /moved meanwhile/);
      assert.equal(mode('victim'), 0o755, 'the symlink target kept its mode');
      assert.equal(mode('opened.moved'), 0o755, 'a directory moved away is not changed from where it was');
    } finally {
      await call((cb) => sftp.close(handle, cb));
    }
  });
});
