import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { FtpClient } from './helpers/file-clients.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * perm-moved-dir-read's race, for a look at metadata: STAT of P/L, whose two
 * links lead 1,300 directories down and back up to P/n, with P (64 deep,
 * kept open) pinned all the while. Meanwhile a second connection moved P
 * into /inbox, a drop box (upload, mkdir, rename: no list, no download), and
 * a file there onto P/n (both allowed), and the STAT described that file,
 * its size and times, under the rights of P's old path. A refusal tells
 * of the node as much: an FTP REST 100 + STOR of P/L was refused 'Offset
 * beyond end of file' where REST 10 was refused as moved, so the two told
 * the size of the box's file by halves. Found by a review; red before the
 * fix.
 */
describe('a stat through a long lookup whose directory was moved meanwhile describes nothing the rights where it is hide', () => {
  let srv: TestServer;
  const user = 'looker';
  const password = 'looker password';
  let home: string;
  const conns: ssh2.Client[] = [];
  let a: ssh2.SFTPWrapper;
  let b: ssh2.SFTPWrapper;
  let ftp: FtpClient;
  // P the 64th directory down: a walk keeps it open however deep it goes on. One for each case.
  const ps = ['a', 'b'].map((k) => `/work/${k}` + '/w'.repeat(61) + '/P');
  const down = Array.from({ length: 1300 }, () => 'x').join('/');
  const secret = 'SECRET OF THE DROP BOX';
  const secretTime = new Date('2001-02-03T04:05:06Z');

  before(async () => {
    srv = await TestServer.start({ users: [{ name: user, password, args: ['--perms', 'all'] }] });
    assert.equal(sluice(srv.dir, ['user', 'perm', user, '/inbox', 'upload,mkdir,rename'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    home = srv.home(user);
    mkdirSync(join(home, 'inbox'), { recursive: true });
    for (const p of ps) mkdirSync(join(home, p, down), { recursive: true });
    for (let i = 0; i < 2; i++) conns.push(await sshConnect({ port: srv.sftpPort, username: user, password }));
    a = await sftpOf(conns[0] as ssh2.Client);
    b = await sftpOf(conns[1] as ssh2.Client);
    ftp = await FtpClient.connect('ftpes', srv, user, password);
  });
  after(async () => {
    for (const c of conns) c.end();
    ftp.close();
    // Too deep for the stop's rmSync (its recursion overflows the stack): rm(1) walks it.
    execFileSync('rm', ['-rf', join(home, 'work'), join(home, 'inbox')]);
    await srv.stop();
  });

  async function stat(path: string): Promise<string> {
    return call<ssh2.Stats>((cb) => a.stat(path, cb)).then(
      (st) => `size ${st.size} mtime ${st.mtime}`,
      (err: unknown) => `refused: ${String(err)}`,
    );
  }
  const told = `size ${secret.length} mtime ${secretTime.getTime() / 1000}`;

  it('the rights are as configured: a file in /inbox is not described', async () => {
    writeFileSync(join(home, 'inbox/a.txt'), secret);
    assert.match(await stat('/inbox/a.txt'), /^refused/);
  });

  /** P/L leads 1,300 directories down and back up to P/n, which is removed; the box holds secret.txt. */
  async function prepare(p: string): Promise<void> {
    writeFileSync(join(home, 'inbox/secret.txt'), secret);
    utimesSync(join(home, 'inbox/secret.txt'), secretTime, secretTime);
    await call((cb) => a.symlink(`${p}/n`, `${p}/${down}/L2`, cb));
    await call((cb) => a.symlink(`${p}/${down}/L2`, `${p}/L`, cb));
    writeFileSync(join(home, p, 'n'), 'MINE');
    assert.match(await stat(`${p}/L`), /^size 4 /);
    await call((cb) => a.unlink(`${p}/n`, cb));
  }

  /** The second connection's two moves: P into the box, the box's file onto P/n. */
  async function moves(p: string): Promise<void> {
    await call((cb) => b.rename(p, '/inbox/P', cb));
    await call((cb) => b.rename('/inbox/secret.txt', '/inbox/P/n', cb));
    assert.equal(readFileSync(join(home, 'inbox/P/n'), 'utf8'), secret);
  }

  it('P moved into /inbox and an inbox file onto P/n while the stat of P/L looks up its links: nothing is described', async () => {
    const p = ps[0] as string;
    await prepare(p);
    let pending = true;
    const looking = stat(`${p}/L`).finally(() => (pending = false));
    await sleep(15);
    await moves(p);
    const raced = pending;
    const got = await looking;
    assert.ok(raced, 'both moves landed while the stat was still looking up its links');
    assert.notEqual(got, told, 'the stat described a file of the drop box');
    assert.match(got, /^refused: .*moved meanwhile/);
  });

  it('the same race under an FTP REST 100 + STOR of P/L: the refusal does not tell the size either', async () => {
    const p = ps[1] as string;
    await call((cb) => b.rename('/inbox/P', '/inbox/P1', cb));
    await prepare(p);
    assert.equal((await ftp.cmd('REST 100')).code, 350);
    let pending = true;
    const storing = ftp.transfer(`STOR ${p}/L`, 'x').finally(() => (pending = false));
    // The passive connection is made first, then STOR sent.
    await sleep(25);
    await moves(p);
    const raced = pending;
    const replies = (await storing).replies.map((r) => `${r.code} ${r.text}`).join(' | ');
    assert.ok(raced, 'both moves landed while the upload was still looking up its links');
    assert.doesNotMatch(replies, /beyond end/i, 'the refusal told the size of a file of the drop box');
    assert.match(replies, /moved meanwhile/);
    assert.equal(readFileSync(join(home, 'inbox/P/n'), 'utf8'), secret);
  });
});
