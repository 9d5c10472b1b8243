import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, readlinkSync, realpathSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

const USER = { name: 'carol', password: 'carol password' };

/*
 * A directory's place is read back from its /proc/self/fd link, whole, and
 * the kernel writes no path past PATH_MAX (4,096 bytes with its NUL). A
 * client path is at most 4,096 bytes, but the home's own path comes before it
 * on the disk: a directory made there by MKD one level at a time was made,
 * and then read as moved (its listing refused). Found by the paths review.
 */
describe('a path whose place on the disk would pass PATH_MAX', () => {
  let srv: TestServer;
  /** The longest virtual path the home holds: what PATH_MAX leaves after the home's real path. */
  let room: number;
  /** A directory 10 bytes short of it, made on the disk. */
  let near: string;
  before(async () => {
    // SYMLINK needs its permission.
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ ...USER, args: ['--perms', 'all'] }] });
    room = 4095 - Buffer.byteLength(realpathSync(srv.home('carol')));
    const names: string[] = [];
    while (room - 10 - (names.length * 201 + 1) > 201) names.push('n'.repeat(200));
    names.push('m'.repeat(room - 10 - names.length * 201 - 1));
    near = '/' + names.join('/');
    assert.equal(Buffer.byteLength(near), room - 10);
    mkdirSync(join(srv.home('carol'), near), { recursive: true });
  });
  after(() => srv.stop());

  it('FTP MKD, CWD and RNTO past it are refused as too long; up to it, made', async () => {
    const c = await loggedIn(srv.ftpPort, USER.name, USER.password);
    try {
      assert.equal((await c.cmd(`CWD ${near}`)).code, 250);
      assert.equal((await c.cmd(`MKD ${'a'.repeat(9)}`)).code, 257, 'a path of exactly the room is made');
      const over = await c.cmd(`MKD ${'b'.repeat(10)}`);
      assert.deepEqual([over.code, over.text], [553, '553 Path too long.']);
      assert.equal((await c.cmd(`CWD ${'b'.repeat(10)}`)).code, 553);
      assert.equal((await c.cmd(`RNFR ${'a'.repeat(9)}`)).code, 350);
      assert.equal((await c.cmd(`RNTO ${'c'.repeat(10)}`)).code, 553);
      assert.ok(!existsSync(join(srv.home('carol'), near, 'b'.repeat(10))));
      assert.ok(!existsSync(join(srv.home('carol'), near, 'c'.repeat(10))));
    } finally {
      c.close();
    }
  });

  it('SFTP MKDIR past it is refused; the directory at it is listed, not taken for moved', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: USER.name, password: USER.password });
    try {
      const sftp = await sftpOf(conn);
      await assert.rejects(call((cb) => sftp.mkdir(`${near}/${'d'.repeat(10)}`, cb)), /Path too long/);
      await call((cb) => sftp.mkdir(`${near}/${'e'.repeat(9)}`, cb));
      const listed = await call<{ filename: string }[]>((cb) => sftp.readdir(`${near}/${'e'.repeat(9)}`, cb));
      assert.deepEqual(listed, []);
    } finally {
      conn.end();
    }
  });

  // Found by a review: the link's path was bounded, its target only by 4,096 bytes.
  it('SFTP SYMLINK to a target past it is refused as too long; to one at it, made', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: USER.name, password: USER.password });
    try {
      const sftp = await sftpOf(conn);
      await assert.rejects(call((cb) => sftp.symlink(`${near}/${'t'.repeat(10)}`, '/link-over', cb)), /Path too long/);
      assert.ok(!existsSync(join(srv.home('carol'), 'link-over')));
      await call((cb) => sftp.symlink(`${near}/${'t'.repeat(9)}`, '/link-at', cb));
    } finally {
      conn.end();
    }
  });

  // Found by a review: a link deep down to a target near the top is stored as `../` per level, text the
  // kernel takes up to 4,095 bytes (PATH_MAX with its NUL), though the link's path and its target's are short.
  it('SFTP SYMLINK whose relative text would pass 4,095 bytes is refused as too long; at 4,095, made', async () => {
    const dirs = (levels: number) => '/' + Array.from({ length: levels }, () => 'd').join('/');
    // 1,364 levels of `../` and a 3-byte name: 4,095 bytes. One level more: 4,098.
    mkdirSync(join(srv.home('carol'), dirs(1365)), { recursive: true });
    const conn = await sshConnect({ port: srv.sftpPort, username: USER.name, password: USER.password });
    try {
      const sftp = await sftpOf(conn);
      await assert.rejects(call((cb) => sftp.symlink('/xyz', `${dirs(1365)}/over`, cb)), /Path too long/);
      assert.ok(!existsSync(join(srv.home('carol'), dirs(1365), 'over')));
      await call((cb) => sftp.symlink('/xyz', `${dirs(1364)}/at`, cb));
      assert.equal(Buffer.byteLength(readlinkSync(join(srv.home('carol'), dirs(1364), 'at'))), 4095);
    } finally {
      conn.end();
    }
  });
});

/*
 * The start's sweep (storage/local-sweep.ts) walks every home to remove
 * upload temporaries left by a crash and count the usage. It held a
 * descriptor per level: a tree deeper than the process's descriptor limit
 * (a user makes one by moving a deep tree into another, or the host) stopped
 * it with EMFILE, its temporaries left and its usage not counted, and took
 * every descriptor of the process while it ran. Found by the paths review.
 */
describe('the start sweep of a tree deeper than the descriptor limit', () => {
  let srv: TestServer;
  const depth = 600;
  const deep = Array.from({ length: depth }, () => 'd').join('/');
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [USER], runner: ['prlimit', '--nofile=256'] });
  });
  after(() => srv.stop());

  it('removes the temporary at the bottom and starts, with no error', { timeout: 120_000 }, async () => {
    await srv.restart(() => {
      mkdirSync(join(srv.home('carol'), deep), { recursive: true });
      writeFileSync(join(srv.home('carol'), deep, '.sluice-upload-leftover'), 'left by a crash');
      writeFileSync(join(srv.home('carol'), deep, 'kept'), 'kept');
    });
    assert.match(readFileSync(`/proc/${srv.pid}/limits`, 'utf8'), /^Max open files +256 +256 /m);
    await srv.logs(/removed upload temporaries left by an earlier run/);
    assert.doesNotMatch(srv.log, /sweeping a home/);
    assert.ok(!existsSync(join(srv.home('carol'), deep, '.sluice-upload-leftover')));
    assert.ok(existsSync(join(srv.home('carol'), deep, 'kept')));
    const c = await loggedIn(srv.ftpPort, USER.name, USER.password);
    try {
      assert.equal((await c.cmd(`SIZE /${deep}/kept`)).text, '213 4');
    } finally {
      c.close();
    }
  });
});
