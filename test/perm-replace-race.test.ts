import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

/*
 * An atomic upload writes to a hidden temporary and renames it over its
 * name at the end. Whether it replaces something, and so needs overwrite,
 * was decided when it opened: a name that appeared meanwhile was replaced
 * all the same. A user without overwrite (a drop box) could open a name,
 * wait for someone else's upload of it and destroy it; with rename, move
 * their own file away, open its name, move it back and replace it; and an
 * SFTP OPEN with EXCL replaced a file it was meant to leave alone.
 * Found by a review; red before the fix.
 */
describe('an upload replaces only what it was allowed to replace when it ends', () => {
  let srv: TestServer;
  const user = 'racer';
  const password = 'race password';
  let home: string;
  let conn: ssh2.Client;
  let sftp: ssh2.SFTPWrapper;

  before(async () => {
    srv = await TestServer.start({ users: [{ name: user, password }] });
    for (const [dir, perms] of [
      ['/incoming', 'upload'],
      ['/keep', 'list,download,upload,rename'],
    ] as const) {
      assert.equal(sluice(srv.dir, ['user', 'perm', user, dir, perms], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    }
    home = srv.home(user);
    mkdirSync(join(home, 'incoming'), { recursive: true });
    mkdirSync(join(home, 'keep'), { recursive: true });
    conn = await sshConnect({ port: srv.sftpPort, username: user, password });
    sftp = await sftpOf(conn);
  });
  after(async () => {
    conn.end();
    await srv.stop();
  });

  /** Open `path` for a whole upload, let `meanwhile` run, then write and close: the CLOSE's status. */
  async function uploadAround(path: string, flags: 'w' | 'wx', meanwhile: () => Promise<void> | void): Promise<number | string> {
    const handle = await call<Buffer>((cb) => sftp.open(path, flags, cb));
    await meanwhile();
    const wrote = await statusOf(call((cb) => sftp.write(handle, Buffer.from('INTRUDER'), 0, 8, 0, cb)));
    const closed = await statusOf(call((cb) => sftp.close(handle, cb)));
    return wrote === 'ok' ? closed : wrote;
  }

  it('a drop-box upload does not replace a file another client stored under its name meanwhile', async () => {
    const status = await uploadAround('/incoming/report.txt', 'w', () => writeFileSync(join(home, 'incoming/report.txt'), 'VICTIM'));
    assert.notEqual(status, 'ok');
    assert.equal(readFileSync(join(home, 'incoming/report.txt'), 'utf8'), 'VICTIM');
    assert.deepEqual(readdirSync(join(home, 'incoming')).filter((n) => n.startsWith('.sluice-upload-')), [], 'no temporary left');
  });

  it('the same trick step by step: rename away, open, rename back, write, close', async () => {
    writeFileSync(join(home, 'keep/book.txt'), 'ORIGINAL');
    await call((cb) => sftp.rename('/keep/book.txt', '/keep/book.old', cb));
    const handle = await call<Buffer>((cb) => sftp.open('/keep/book.txt', 'w', cb));
    await call((cb) => sftp.rename('/keep/book.old', '/keep/book.txt', cb));
    await statusOf(call((cb) => sftp.write(handle, Buffer.from('INTRUDER'), 0, 8, 0, cb)));
    assert.notEqual(await statusOf(call((cb) => sftp.close(handle, cb))), 'ok');
    assert.equal(readFileSync(join(home, 'keep/book.txt'), 'utf8'), 'ORIGINAL');
  });

  it('OPEN with CREAT|EXCL never replaces a file that appeared after the open', async () => {
    const status = await uploadAround('/fresh.txt', 'wx', () => writeFileSync(join(home, 'fresh.txt'), 'FIRST'));
    assert.notEqual(status, 'ok');
    assert.equal(readFileSync(join(home, 'fresh.txt'), 'utf8'), 'FIRST');
  });

  it('with overwrite, a name taken meanwhile is replaced as before', async () => {
    const status = await uploadAround('/mine.txt', 'w', () => writeFileSync(join(home, 'mine.txt'), 'OLD'));
    assert.equal(status, 'ok');
    assert.equal(readFileSync(join(home, 'mine.txt'), 'utf8'), 'INTRUDER');
  });
});
