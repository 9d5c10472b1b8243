import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn, startUpload } from './helpers/ftp-raw.js';
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
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'mover', password: 'mover password', args: ['--perms', 'all'] }] });
    mkdirSync(join(srv.home('mover'), 'd1'));
  });
  after(() => srv.stop());

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
    const upload = (await srv.audit()).find((r) => r.event === 'upload');
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
    const upload = (await srv.audit()).find((r) => r.event === 'upload' && r.path_at_open === '/d/alias');
    assert.equal(upload?.path, '/y/target.bin', JSON.stringify(upload));
  });

  it('an upload whose directory stayed has no path_at_open', async () => {
    const control = await loggedIn(srv.ftpPort, 'mover', 'mover password');
    try {
      const data = await startUpload(control, '/d2/y.bin');
      await new Promise<void>((resolve) => data.end(Buffer.alloc(1000, 3), () => resolve()));
      assert.equal((await control.read())?.code, 226);
    } finally {
      control.close();
    }
    const upload = (await srv.audit()).find((r) => r.event === 'upload' && r.path === '/d2/y.bin');
    assert.ok(upload, 'recorded');
    assert.equal('path_at_open' in upload, false, JSON.stringify(upload));
  });
});
