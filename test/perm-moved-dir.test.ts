import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

/*
 * An open file's directory is pinned by its descriptor: the session acts on
 * it wherever it is by then. A rename may move a directory only where the
 * user's rights are no wider than where it was, so an open file's changes
 * checked against where it was opened stay within what the user may do...
 * except where the object acted on is not the open file itself: an atomic
 * upload takes its name at the end, replacing whatever holds that name by
 * then, and whether it may replace was decided from the directory it was
 * opened in. A user with no overwrite (nor delete) in /archive opened an
 * upload in /work/d, moved d into /archive (allowed: /archive's rights are
 * within /work's), moved an archived file onto the upload's name in d
 * (a rename within /archive onto a free name), and closed the upload: the
 * archived file was replaced. Found by a review; red before the fix.
 */
describe('an upload whose directory was moved replaces only what the rights where it now is allow', () => {
  let srv: TestServer;
  const user = 'mover';
  const password = 'mover password';
  let home: string;
  let conn: ssh2.Client;
  let sftp: ssh2.SFTPWrapper;

  before(async () => {
    srv = await TestServer.start({ users: [{ name: user, password }] });
    // Kept for good: files may be added and moved about, never replaced or removed.
    assert.equal(sluice(srv.dir, ['user', 'perm', user, '/archive', 'list,download,upload,mkdir,rename'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    home = srv.home(user);
    mkdirSync(join(home, 'archive'), { recursive: true });
    mkdirSync(join(home, 'work'), { recursive: true });
    conn = await sshConnect({ port: srv.sftpPort, username: user, password });
    sftp = await sftpOf(conn);
  });
  after(async () => {
    conn.end();
    await srv.stop();
  });

  it('the rights the race needs are as configured: in /archive a file cannot be replaced by rename or upload', async () => {
    writeFileSync(join(home, 'archive/a.txt'), 'A');
    writeFileSync(join(home, 'archive/b.txt'), 'B');
    assert.notEqual(await statusOf(call((cb) => sftp.ext_openssh_rename('/archive/b.txt', '/archive/a.txt', cb))), 'ok');
    assert.notEqual(await statusOf(call((cb) => sftp.writeFile('/archive/a.txt', 'X', cb))), 'ok');
    assert.notEqual(await statusOf(call((cb) => sftp.unlink('/archive/a.txt', cb))), 'ok');
    assert.equal(readFileSync(join(home, 'archive/a.txt'), 'utf8'), 'A');
  });

  it('open in /work/d, move d into /archive, move an archived file onto the name, close: the archived file stays', async () => {
    writeFileSync(join(home, 'archive/ledger.txt'), 'VICTIM');
    await call((cb) => sftp.mkdir('/work/d', cb));
    const handle = await call<Buffer>((cb) => sftp.open('/work/d/f.txt', 'w', cb));
    await call((cb) => sftp.rename('/work/d', '/archive/d', cb));
    await call((cb) => sftp.rename('/archive/ledger.txt', '/archive/d/f.txt', cb));
    assert.equal(readFileSync(join(home, 'archive/d/f.txt'), 'utf8'), 'VICTIM');
    await statusOf(call((cb) => sftp.write(handle, Buffer.from('INTRUDER'), 0, 8, 0, cb)));
    const closed = await statusOf(call((cb) => sftp.close(handle, cb)));
    assert.equal(readFileSync(join(home, 'archive/d/f.txt'), 'utf8'), 'VICTIM', `the archived file was replaced (CLOSE: ${closed})`);
    assert.notEqual(closed, 'ok');
  });

  it('an upload in a directory moved nowhere narrower still replaces as before', async () => {
    writeFileSync(join(home, 'work/mine.txt'), 'OLD');
    const handle = await call<Buffer>((cb) => sftp.open('/work/mine.txt', 'w', cb));
    await call((cb) => sftp.write(handle, Buffer.from('NEW'), 0, 3, 0, cb));
    assert.equal(await statusOf(call((cb) => sftp.close(handle, cb))), 'ok');
    assert.equal(readFileSync(join(home, 'work/mine.txt'), 'utf8'), 'NEW');
  });
});
