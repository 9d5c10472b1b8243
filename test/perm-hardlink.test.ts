import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { FtpClient, SftpClient, outcome } from './helpers/file-clients.js';
import { TestServer } from './helpers/server.js';
import { call } from './helpers/ssh.js';

const OPEN = { WRITE: 0x02, APPEND: 0x04, CREAT: 0x08, TRUNC: 0x10 };

/*
 * Vulnerability 10 of issue 11: with the symlink permission, a hard link to a
 * file of the read-only /pub gave it a writable second name, and a write in
 * place through it changed /pub's file; a link to a drop-box file made it
 * readable. Links are made over SFTP (hardlink@openssh.com), written over
 * SFTP and FTP.
 */
describe('hard links give a file no rights it lacks where it is', () => {
  let srv: TestServer;
  let home: string;
  let sftp: SftpClient;
  let ftp: FtpClient;
  const user = 'linker';
  const password = 'linker password';

  before(async () => {
    srv = await TestServer.start({
      users: [{ name: user, password, args: ['--perms', 'list,download,upload,overwrite,delete,rename,mkdir,rmdir,chtimes,symlink'] }],
    });
    for (const [dir, perms] of [['/pub', 'list,download'], ['/incoming', 'upload'], ['/box', 'list,upload,symlink']] as const) {
      assert.equal(sluice(srv.dir, ['user', 'perm', user, dir, perms], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    }
    home = srv.home(user);
    mkdirSync(join(home, 'pub'));
    mkdirSync(join(home, 'incoming'));
    mkdirSync(join(home, 'box'));
    writeFileSync(join(home, 'pub/data.txt'), 'ORIGINAL');
    writeFileSync(join(home, 'incoming/drop.txt'), 'DROPPED');
    sftp = await SftpClient.connect(srv, user, password);
    ftp = await FtpClient.connect('ftpes', srv, user, password);
  });
  after(async () => {
    sftp.close();
    ftp.close();
    await srv.stop();
  });

  const hardlink = (from: string, to: string) => call((cb) => sftp.sftp.ext_openssh_hardlink(from, to, cb));
  /** SFTP OPEN with these flags, one write at `offset`, CLOSE. */
  async function sftpWrite(path: string, flags: number, data: string, offset = 0): Promise<void> {
    const handle = await call<Buffer>((cb) => sftp.sftp.open(path, flags, cb));
    try {
      await call((cb) => sftp.sftp.write(handle, Buffer.from(data), 0, data.length, offset, cb));
    } finally {
      await call((cb) => sftp.sftp.close(handle, cb));
    }
  }
  async function ftpAppend(path: string, data: string): Promise<string> {
    const { replies } = await ftp.transfer(`APPE ${path}`, data);
    return replies.map((r) => r.code).join(' ');
  }
  async function ftpRestStore(path: string, offset: number, data: string): Promise<string> {
    await ftp.cmd(`REST ${offset}`);
    const { replies } = await ftp.transfer(`STOR ${path}`, data);
    return replies.map((r) => r.code).join(' ');
  }

  it('no link to a read-only file, so no write through one (SFTP and FTP)', async () => {
    assert.notEqual(await outcome(hardlink('/pub/data.txt', '/hl')), 'ok');
    // Whatever the link request did, no write by any route may reach /pub's file.
    await outcome(sftpWrite('/hl', OPEN.WRITE, 'SFTP', 0));
    await outcome(sftpWrite('/hl', OPEN.WRITE | OPEN.APPEND, '+APPEND'));
    await ftpAppend('/hl', '+APPE');
    await ftpRestStore('/hl', 2, 'REST');
    assert.equal(readFileSync(join(home, 'pub/data.txt'), 'utf8'), 'ORIGINAL');
    assert.equal(statSync(join(home, 'pub/data.txt')).nlink, 1);
  });

  it('no link to a drop-box file, so it stays unreadable', async () => {
    assert.notEqual(await outcome(hardlink('/incoming/drop.txt', '/dl')), 'ok');
    assert.notEqual(await outcome(sftp.get('/dl')), 'ok');
    assert.ok(!existsSync(join(home, 'dl')));
  });

  it('a link between places with the same rights still works; neither name is written in place', async () => {
    writeFileSync(join(home, 'mine.txt'), 'MINE');
    await hardlink('/mine.txt', '/mine2.txt');
    assert.equal((await sftp.get('/mine2.txt')).toString(), 'MINE');
    // Writing where the bytes lie would change both names: refused, by every route.
    assert.notEqual(await outcome(sftpWrite('/mine2.txt', OPEN.WRITE, 'X', 0)), 'ok');
    assert.notEqual(await outcome(sftpWrite('/mine2.txt', OPEN.WRITE | OPEN.APPEND, 'X')), 'ok');
    assert.equal(await ftpAppend('/mine2.txt', 'X'), '550');
    assert.equal(await ftpRestStore('/mine2.txt', 2, 'X'), '550');
    assert.equal(readFileSync(join(home, 'mine.txt'), 'utf8'), 'MINE');
    // A whole upload replaces this name only.
    await sftpWrite('/mine2.txt', OPEN.WRITE | OPEN.CREAT | OPEN.TRUNC, 'NEW');
    assert.equal(readFileSync(join(home, 'mine2.txt'), 'utf8'), 'NEW');
    assert.equal(readFileSync(join(home, 'mine.txt'), 'utf8'), 'MINE');
    // Resume of an ordinary file still works over both protocols.
    await sftpWrite('/mine2.txt', OPEN.WRITE, '+S', 3);
    assert.equal(await ftpAppend('/mine2.txt', '+A'), '150 226');
    assert.equal(await ftpRestStore('/mine2.txt', 7, '+R'), '150 226');
    assert.equal(readFileSync(join(home, 'mine2.txt'), 'utf8'), 'NEW+S+A+R');
  });

  it('no second name for a file while it is written in place: the writer would go on changing it there', async () => {
    // Found by an adversarial review: an in-place handle opened first, the file linked into a drop box
    // (/box: list, upload and links; no overwrite, no append), then changed through the handle after its delivery.
    writeFileSync(join(home, 'live.txt'), 'GOOD CONTENT');
    const handle = await call<Buffer>((cb) => sftp.sftp.open('/live.txt', 0x01 | OPEN.WRITE, cb));
    try {
      const linked = await outcome(hardlink('/live.txt', '/box/live.txt'));
      assert.match(linked, /being written by another transfer/);
      assert.ok(!existsSync(join(home, 'box/live.txt')));
      await call((cb) => sftp.sftp.write(handle, Buffer.from('EVIL'), 0, 4, 0, cb));
    } finally {
      await call((cb) => sftp.sftp.close(handle, cb));
    }
    assert.equal(readFileSync(join(home, 'live.txt'), 'utf8'), 'EVIL CONTENT');
    assert.equal(statSync(join(home, 'live.txt')).nlink, 1);
    // Once the writer is done, the link is made, and the file is written in place no more.
    await hardlink('/live.txt', '/box/live.txt');
    assert.notEqual(await outcome(sftpWrite('/live.txt', OPEN.WRITE, 'X', 0)), 'ok');
    assert.equal(readFileSync(join(home, 'box/live.txt'), 'utf8'), 'EVIL CONTENT');
  });
});
