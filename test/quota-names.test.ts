import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client as FtpClient } from 'basic-ftp';
import { TestServer } from './helpers/server.js';
import { call } from './helpers/ssh.js';
import { diskUsage, persistedUsage, sftpRemote } from './helpers/quota.js';

/*
 * Issue #11, smaller gap: the file quota counted regular files only, so
 * directories, symlinks and hard links were free. Every name counts now.
 */

const PASSWORD = 'names quota password';
const PERMS = 'list,download,upload,overwrite,delete,rename,mkdir,rmdir,chtimes,symlink';

describe('the file quota counts every name: directories, symlinks, hard links', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      users: ['sftp-names', 'ftp-names'].map((name) => ({ name, password: PASSWORD, args: ['--quota-files', '4', '--perms', PERMS] })),
    });
  });
  after(() => srv.stop());

  const assertMatchesDisk = (user: string) => {
    const disk = diskUsage(srv.home(user));
    assert.deepEqual(persistedUsage(srv, user), { bytes: disk.bytes, files: disk.files });
    return disk;
  };

  it('SFTP: mkdir, symlink and hard link take a slot, are refused when none is left, and give it back', async () => {
    const r = await sftpRemote(srv, 'sftp-names', PASSWORD);
    const { sftp } = r;
    const quota = /quota/i;
    try {
      await call((cb) => sftp.mkdir('/d1', cb));
      await call((cb) => sftp.symlink('/d1', '/l1', cb));
      await r.put('/f1', Buffer.from('one'));
      await call((cb) => sftp.ext_openssh_hardlink('/f1', '/h1', cb));
      assert.equal(assertMatchesDisk('sftp-names').files, 4);

      await assert.rejects(call((cb) => sftp.mkdir('/d2', cb)), quota);
      await assert.rejects(call((cb) => sftp.symlink('/f1', '/l2', cb)), quota);
      await assert.rejects(call((cb) => sftp.ext_openssh_hardlink('/f1', '/h2', cb)), quota);
      await assert.rejects(r.put('/f2', Buffer.from('two')), quota);
      assert.equal(assertMatchesDisk('sftp-names').files, 4);

      await call((cb) => sftp.rmdir('/d1', cb));
      await call((cb) => sftp.mkdir('/d2', cb));
      await r.remove('/l1'); // a symlink frees its slot
      await call((cb) => sftp.symlink('/d2', '/l2', cb));
      await r.remove('/h1'); // so does a hard link, though the file's bytes stay under /f1
      await r.put('/f2', Buffer.from('two'));
      assert.equal(assertMatchesDisk('sftp-names').files, 4);
    } finally {
      await r.close();
    }
  });

  it('FTPS: MKD takes a slot and is refused when none is left; RMD gives it back', async () => {
    const c = new FtpClient(60_000);
    try {
      await c.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'ftp-names', password: PASSWORD, secure: true, secureOptions: { rejectUnauthorized: false } });
      for (const d of ['a', 'b', 'c', 'd']) await c.send(`MKD ${d}`);
      await assert.rejects(c.send('MKD e'), (err: { code?: number }) => err.code === 552);
      assert.equal(assertMatchesDisk('ftp-names').files, 4);
      await c.send('RMD a');
      await c.send('MKD e');
      assert.equal(assertMatchesDisk('ftp-names').files, 4);
    } finally {
      c.close();
    }
  });
});
