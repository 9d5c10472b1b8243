import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn, startUpload } from './helpers/ftp-raw.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';
import { TestServer } from './helpers/server.js';

/**
 * An upload whose directory is renamed while it runs ends in the directory's
 * new place (it is pinned), and its record must say so. Found by a review: the
 * record, and an upload hook's {path}, named the path of the open, where the
 * file never was, and the user could put another file there meanwhile for the
 * hook to act on; `audit query --path` of the new place missed it.
 */
describe('an upload into a directory renamed meanwhile is recorded where it ended', () => {
  let srv: TestServer;
  /** A tree of 16 directories of 250-byte names: 4,016 bytes, a path a client may still name. */
  const deep = Array.from({ length: 16 }, (_, i) => '/' + String(i).padEnd(250, 'd')).join('');
  const longName = 'f'.repeat(255);
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'mover', password: 'mover password', args: ['--perms', 'all'] }] });
    mkdirSync(join(srv.home('mover'), 'd1'));
    mkdirSync(join(srv.home('mover'), deep), { recursive: true });
  });
  after(async () => {
    // Paths in that tree now pass PATH_MAX on the host: its lower half is moved up, so the server's cleanup can remove it.
    renameSync(join(srv.home('mover'), deep.split('/').slice(0, 9).join('/')), join(srv.home('mover'), 'lower-half'));
    await srv.stop();
  });

  it('records the path it ended at, and the path of its open beside it', async () => {
    const control = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    const other = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    try {
      const data = await startUpload(control, '/d1/x.bin');
      await new Promise<void>((resolve) => data.write(Buffer.alloc(64 * 1024, 1), () => resolve()));
      assert.equal((await other.cmd('RNFR d1')).code, 350);
      assert.equal((await other.cmd('RNTO d2')).code, 250);
      await new Promise<void>((resolve) => data.end(Buffer.alloc(64 * 1024, 2), () => resolve()));
      assert.equal((await control.read())?.code, 226);
    } finally {
      control.close();
      other.close();
    }
    assert.equal(readFileSync(join(srv.home('mover'), 'd2', 'x.bin')).length, 128 * 1024);
    assert.ok(!existsSync(join(srv.home('mover'), 'd1')));
    const upload = (await srv.auditUntil((r) => r.event === 'upload')).find((r) => r.event === 'upload');
    assert.equal(upload?.path, '/d2/x.bin', JSON.stringify(upload));
    assert.equal(upload?.path_at_open, '/d1/x.bin');
    assert.equal(upload?.result, 'ok');
  });

  it('through a link to a file in another directory, moved meanwhile: the name the bytes went to', async () => {
    // Found by a second review: the name was taken from the path given, so the record named /y/alias, which
    // did not exist (the bytes went to target.bin), and which the user could make for a hook to act on.
    const home = srv.home('mover');
    mkdirSync(join(home, 'd'));
    mkdirSync(join(home, 'x'));
    symlinkSync('../x/target.bin', join(home, 'd', 'alias'));
    const control = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    const other = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    try {
      const data = await startUpload(control, '/d/alias');
      await new Promise<void>((resolve) => data.write(Buffer.alloc(1000, 1), () => resolve()));
      assert.equal((await other.cmd('RNFR x')).code, 350);
      assert.equal((await other.cmd('RNTO y')).code, 250);
      await new Promise<void>((resolve) => data.end(Buffer.alloc(1000, 2), () => resolve()));
      assert.equal((await control.read())?.code, 226);
    } finally {
      control.close();
      other.close();
    }
    assert.equal(readFileSync(join(home, 'y', 'target.bin')).length, 2000);
    // This upload's record, under whichever name it was given.
    const upload = (await srv.auditUntil((r) => r.event === 'upload' && (r.path_at_open === '/d/alias' || r.path === '/d/alias'))).find(
      (r) => r.event === 'upload' && r.path_at_open === '/d/alias',
    );
    assert.equal(upload?.path, '/y/target.bin', JSON.stringify(upload));
  });

  // Found by a review: an upload written in place (an append, a resume) whose file itself was renamed meanwhile
  // was recorded, and told to hooks, under the name of its open, which the user had given another file. The
  // file keeps its name while it is written in place, as it cannot be removed then either.
  it('the file of an append under way cannot be renamed: its record names where its bytes are', async () => {
    const home = srv.home('mover');
    writeFileSync(join(home, 'log.txt'), 'start\n');
    const control = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    const other = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    try {
      const data = await startUpload(control, '/log.txt', false, 'APPE');
      await new Promise<void>((resolve) => data.write(Buffer.alloc(1000, 1), () => resolve()));
      assert.equal((await other.cmd('RNFR log.txt')).code, 350);
      const refused = await other.cmd('RNTO kept.txt');
      assert.equal(refused.code, 451, refused.text);
      assert.match(refused.text, /being written/);
      await new Promise<void>((resolve) => data.end(Buffer.alloc(1000, 2), () => resolve()));
      assert.equal((await control.read())?.code, 226);
      // Once the append is over, the file moves as any other.
      assert.equal((await other.cmd('RNFR log.txt')).code, 350);
      assert.equal((await other.cmd('RNTO kept.txt')).code, 250);
    } finally {
      control.close();
      other.close();
    }
    assert.equal(readFileSync(join(home, 'kept.txt')).length, 6 + 2000);
    // The upload's record and the rename's, each recorded as it was made (only one rename was).
    const records = await srv.auditUntilAll([
      (r) => r.event === 'upload' && (r.path === '/log.txt' || r.path_at_open === '/log.txt'),
      (r) => r.event === 'rename' && r.from === '/log.txt',
    ]);
    const upload = records.find((r) => r.event === 'upload' && (r.path === '/log.txt' || r.path_at_open === '/log.txt'));
    assert.deepEqual([upload?.path, upload?.path_at_open, upload?.result], ['/log.txt', undefined, 'ok']);
    const renamed = records.filter((r) => r.event === 'rename' && r.from === '/log.txt');
    assert.deepEqual(renamed.map((r) => [r.to, (r.seq as number) > (upload?.seq as number)]), [['/kept.txt', true]]);
  });

  // Found by a review: a directory moved deeper left the open file at a path longer than a client may
  // type (4,096 bytes), and the upload's end threw on it after its commit: no record, and the rejection
  // ended the server's process, every user's session with it. Each case sees the server serve again after.
  const stillServes = async () => {
    const c = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    try {
      assert.equal((await c.cmd('PWD')).code, 257);
    } finally {
      c.close();
    }
  };

  it('FTP: moved deeper than a client may name it, the upload ends recorded at its long path', async () => {
    mkdirSync(join(srv.home('mover'), 'm1'));
    const control = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    const other = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    try {
      const data = await startUpload(control, `/m1/${longName}`);
      await new Promise<void>((resolve) => data.write(Buffer.alloc(1000, 1), () => resolve()));
      assert.equal((await other.cmd('RNFR /m1')).code, 350);
      assert.equal((await other.cmd(`RNTO ${deep}/m1`)).code, 250);
      await new Promise<void>((resolve) => data.end(Buffer.alloc(1000, 2), () => resolve()));
      assert.equal((await control.read())?.code, 226);
    } finally {
      control.close();
      other.close();
    }
    await stillServes();
    const moved = (r: Record<string, unknown>) => r.event === 'upload' && r.path_at_open === `/m1/${longName}`;
    const upload = (await srv.auditUntil(moved)).find(moved);
    assert.equal(upload?.path, `${deep}/m1/${longName}`, JSON.stringify(upload)?.slice(0, 300));
    assert.equal(upload?.result, 'ok');
  });

  for (const how of ['closed', 'left open'] as const) {
    it(`SFTP: moved deeper than a client may name it in the same session, the upload ${how} ends recorded at its long path`, async () => {
      const top = `/s-${how.replace(' ', '-')}`;
      const conn = await sshConnect({ port: srv.sftpPort, username: 'mover', password: 'mover password' });
      try {
        const sftp = await sftpOf(conn);
        await call((cb) => sftp.mkdir(top, cb));
        const handle = await call<Buffer>((cb) => sftp.open(`${top}/${longName}`, 'w', cb));
        await call((cb) => sftp.write(handle, Buffer.from('hello'), 0, 5, 0, cb));
        await call((cb) => sftp.rename(top, deep + top, cb));
        if (how === 'closed') await call((cb) => sftp.close(handle, cb));
        sftp.end();
      } finally {
        conn.end();
      }
      const path = `${deep}${top}/${longName}`;
      const upload = (await srv.auditUntil((r) => r.event === 'upload' && r.path === path)).find((r) => r.event === 'upload' && r.path === path);
      assert.equal(upload?.result, how === 'closed' ? 'ok' : 'aborted', JSON.stringify(upload)?.slice(-300));
      assert.equal(upload?.path_at_open, `${top}/${longName}`);
      await stillServes();
    });
  }

  it('an upload whose directory stayed has no path_at_open', async () => {
    const control = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    try {
      const data = await startUpload(control, '/d2/y.bin');
      await new Promise<void>((resolve) => data.end(Buffer.alloc(1000, 3), () => resolve()));
      assert.equal((await control.read())?.code, 226);
    } finally {
      control.close();
    }
    const upload = (await srv.auditUntil((r) => r.event === 'upload' && r.path === '/d2/y.bin')).find((r) => r.event === 'upload' && r.path === '/d2/y.bin');
    assert.ok(upload, 'recorded');
    assert.equal('path_at_open' in upload, false, JSON.stringify(upload));
  });
});
