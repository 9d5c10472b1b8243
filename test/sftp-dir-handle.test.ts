import assert from 'node:assert/strict';
import { mkdirSync, renameSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sftpWithEveryRight } from './helpers/in-process.js';
import { call } from './helpers/ssh.js';

/*
 * FSETSTAT and FSTAT on a directory handle act on the directory opened.
 * Found by the paths review: FSETSTAT went by the handle's path, following a
 * final symlink, so once the directory was moved and a symlink put in its
 * place (another session of the same user), the symlink's target was
 * changed: a directory the handle never named. FSTAT described whatever had
 * the name by then. As a listing is read, a directory handle is used only
 * while the directory is still where its rights were checked.
 * fstatvfs@openssh.com on a handle went by the handle's path too, so it
 * described the file system of whatever had the name by then; it answers
 * for the node open, as FSTAT does.
 */
describe('a directory handle', () => {
  let sftp: ssh2.SFTPWrapper;
  let home: string;
  let close: () => Promise<void>;
  const mode = (name: string) => statSync(join(home, name)).mode & 0o777;

  before(async () => {
    ({ sftp, home, close } = await sftpWithEveryRight('lister'));
    await call((cb) => sftp.mkdir('/here', cb));
  });
  after(() => close());

  async function withDir(path: string, use: (handle: Buffer) => Promise<void>): Promise<void> {
    const handle = await call<Buffer>((cb) => sftp.opendir(path, cb));
    try {
      await use(handle);
    } finally {
      await call((cb) => sftp.close(handle, cb));
    }
  }

  type Vfs = { f_bsize: number; f_blocks: number };
  /** The home's file system, with its size: it holds everything the tests open. */
  async function sameFileSystemAsHome(vfs: Vfs): Promise<void> {
    const home = await call<Vfs>((cb) => sftp.ext_openssh_statvfs('/', cb));
    assert.ok(vfs.f_bsize > 0 && vfs.f_blocks > 0);
    assert.deepEqual([vfs.f_bsize, vfs.f_blocks], [home.f_bsize, home.f_blocks]);
  }

  it('FSETSTAT changes the directory opened, in place', () =>
    withDir('/here', async (handle) => {
      await call((cb) => sftp.fsetstat(handle, { mode: 0o700 }, cb));
      const when = new Date('2001-02-03T04:05:06Z');
      await call((cb) => sftp.fsetstat(handle, { atime: when, mtime: when }, cb));
      assert.equal(mode('here'), 0o700);
      assert.equal(statSync(join(home, 'here')).mtimeMs, when.getTime());
    }));

  it('FSETSTAT never changes what a symlink put in the directory\'s place leads to', async () => {
    mkdirSync(join(home, 'opened'), { mode: 0o755 });
    mkdirSync(join(home, 'victim'), { mode: 0o755 });
    await withDir('/opened', async (handle) => {
      renameSync(join(home, 'opened'), join(home, 'opened.moved'));
      symlinkSync('victim', join(home, 'opened'));
      await assert.rejects(call((cb) => sftp.fsetstat(handle, { mode: 0o700 }, cb)), /moved meanwhile/);
      assert.equal(mode('victim'), 0o755, 'the symlink target kept its mode');
      assert.equal(mode('opened.moved'), 0o755, 'a directory moved away is not changed from where it was');
    });
  });

  it('FSTAT describes the directory opened', async () => {
    mkdirSync(join(home, 'seen'), { mode: 0o751 });
    await withDir('/seen', async (handle) => {
      const st = await call<ssh2.Stats>((cb) => sftp.fstat(handle, cb));
      assert.equal(st.mode & 0o7777, 0o751);
      assert.ok(st.isDirectory());
    });
  });

  it('FSTAT never describes what took the directory\'s name', async () => {
    mkdirSync(join(home, 'first'), { mode: 0o751 });
    mkdirSync(join(home, 'other'), { mode: 0o705 });
    await withDir('/first', async (handle) => {
      renameSync(join(home, 'first'), join(home, 'first.moved'));
      symlinkSync('other', join(home, 'first'));
      await assert.rejects(call((cb) => sftp.fstat(handle, cb)), /moved meanwhile/);
    });
  });

  it('fstatvfs describes the file system of the directory opened', () =>
    withDir('/here', async (handle) => {
      await sameFileSystemAsHome(await call<Vfs>((cb) => sftp.ext_openssh_fstatvfs(handle, cb)));
    }));

  it('fstatvfs never describes what took the directory\'s name', async () => {
    mkdirSync(join(home, 'room'));
    mkdirSync(join(home, 'elsewhere'));
    await withDir('/room', async (handle) => {
      renameSync(join(home, 'room'), join(home, 'room.moved'));
      symlinkSync('elsewhere', join(home, 'room'));
      await assert.rejects(call((cb) => sftp.ext_openssh_fstatvfs(handle, cb)), /moved meanwhile/);
    });
  });

  it('fstatvfs on a file\'s handle answers for the file open, whatever its name leads to now', async () => {
    writeFileSync(join(home, 'held.bin'), 'x');
    const handle = await call<Buffer>((cb) => sftp.open('/held.bin', 'r', cb));
    try {
      unlinkSync(join(home, 'held.bin'));
      await sameFileSystemAsHome(await call<Vfs>((cb) => sftp.ext_openssh_fstatvfs(handle, cb)));
    } finally {
      await call((cb) => sftp.close(handle, cb));
    }
  });
});
