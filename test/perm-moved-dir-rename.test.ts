import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

/*
 * A rename acts in the directories its lookups pinned, wherever they are by
 * then, under the rights of the paths it looked up. A rename may move a
 * directory only where the rights narrow, so another request that moved the
 * source's directory meanwhile put it, and whatever was moved into it after,
 * under narrower rights than those checked. A user with no delete nor
 * overwrite in /archive (list,download,upload,mkdir,rename) renamed
 * /work/P/n to a name 1,900 directories deep, whose lookup takes a while;
 * meanwhile a second connection moved P into /archive and an archived file
 * to /archive/P/n (both allowed). The first rename then took the archived
 * file out to /work, where it may be deleted: what narrows() is there to
 * refuse. Found by a review; red before the fix.
 */
describe('a rename whose source directory was moved meanwhile does not act under the rights of where it was', () => {
  let srv: TestServer;
  const user = 'mover';
  const password = 'mover password';
  let home: string;
  const conns: ssh2.Client[] = [];
  let a: ssh2.SFTPWrapper;
  let b: ssh2.SFTPWrapper;
  // Its lookup is slow (a directory at a time), which gives the other connection its time.
  const deep = 'work/deep/' + Array.from({ length: 1900 }, () => 'a').join('/');

  before(async () => {
    srv = await TestServer.start({ users: [{ name: user, password }] });
    assert.equal(sluice(srv.dir, ['user', 'perm', user, '/archive', 'list,download,upload,mkdir,rename'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    home = srv.home(user);
    mkdirSync(join(home, 'archive'), { recursive: true });
    mkdirSync(join(home, deep), { recursive: true });
    for (let i = 0; i < 2; i++) conns.push(await sshConnect({ port: srv.sftpPort, username: user, password }));
    a = await sftpOf(conns[0] as ssh2.Client);
    b = await sftpOf(conns[1] as ssh2.Client);
  });
  after(async () => {
    for (const c of conns) c.end();
    // Too deep for the stop's rmSync (its recursion overflows the stack): rm(1) walks it.
    execFileSync('rm', ['-rf', join(home, 'work/deep')]);
    await srv.stop();
  });

  it('the rights are as configured: an archived file cannot be moved out of /archive', async () => {
    writeFileSync(join(home, 'archive/a.txt'), 'A');
    assert.notEqual(await statusOf(call((cb) => a.rename('/archive/a.txt', '/work/a.txt', cb))), 'ok');
    assert.notEqual(await statusOf(call((cb) => a.unlink('/archive/a.txt', cb))), 'ok');
    assert.equal(readFileSync(join(home, 'archive/a.txt'), 'utf8'), 'A');
  });

  it('P moved into /archive and an archived file onto P/n while the rename of /work/P/n looks up its target: the file stays', async () => {
    writeFileSync(join(home, 'archive/ledger.txt'), 'VICTIM');
    mkdirSync(join(home, 'work/P'));
    let pending = true;
    const renaming = statusOf(call((cb) => a.rename('/work/P/n', `/${deep}/out`, cb))).finally(() => (pending = false));
    await sleep(10);
    await call((cb) => b.rename('/work/P', '/archive/P', cb));
    await call((cb) => b.rename('/archive/ledger.txt', '/archive/P/n', cb));
    const raced = pending;
    const status = await renaming;
    assert.ok(raced, 'both moves landed while the rename was still looking up its target');
    assert.equal(existsSync(join(home, deep, 'out')), false, `the archived file was taken out of /archive (rename: ${status})`);
    assert.equal(readFileSync(join(home, 'archive/P/n'), 'utf8'), 'VICTIM');
    assert.notEqual(status, 'ok');
  });

  it('a rename with nothing moved meanwhile goes through as before', async () => {
    writeFileSync(join(home, 'work/mine.txt'), 'MINE');
    assert.equal(await statusOf(call((cb) => a.rename('/work/mine.txt', `/${deep}/mine.txt`, cb))), 'ok');
    assert.equal(readFileSync(join(home, deep, 'mine.txt'), 'utf8'), 'MINE');
  });
});
