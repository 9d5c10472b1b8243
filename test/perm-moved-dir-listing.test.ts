import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * A directory handle lives as long as its client keeps it. One SFTP
 * connection opened /work/D (its 151 names gathered at the first READDIR,
 * described 100 a batch), read a batch and removed its own D/zz; a second
 * moved D into /inbox, a drop box (upload, mkdir, rename: no list, no
 * download), and a file there onto /inbox/D/zz (all allowed). The next
 * READDIR described that file, its size and times, under the rights of D's
 * old path. Found by a review; red before the fix.
 */
describe('a directory handle whose directory was moved into a drop box describes nothing more', () => {
  let srv: TestServer;
  const user = 'lister';
  const password = 'lister password';
  let home: string;
  const conns: ssh2.Client[] = [];
  let a: ssh2.SFTPWrapper;
  let b: ssh2.SFTPWrapper;
  const secret = 'SECRET OF THE DROP BOX';
  const secretTime = new Date('2001-02-03T04:05:06Z');

  before(async () => {
    srv = await TestServer.start({ users: [{ name: user, password, args: ['--perms', 'all'] }] });
    assert.equal(sluice(srv.dir, ['user', 'perm', user, '/inbox', 'upload,mkdir,rename'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    home = srv.home(user);
    mkdirSync(join(home, 'inbox'), { recursive: true });
    mkdirSync(join(home, 'work/D'), { recursive: true });
    for (let i = 0; i < 150; i++) writeFileSync(join(home, `work/D/f${String(i).padStart(3, '0')}`), 'mine');
    writeFileSync(join(home, 'work/D/zz'), 'mine too');
    for (let i = 0; i < 2; i++) conns.push(await sshConnect({ port: srv.sftpPort, username: user, password }));
    a = await sftpOf(conns[0] as ssh2.Client);
    b = await sftpOf(conns[1] as ssh2.Client);
  });
  after(async () => {
    for (const c of conns) c.end();
    await srv.stop();
  });

  const readdir = (handle: Buffer) => call<ssh2.FileEntry[] | false>((cb) => a.readdir(handle, cb));

  it('the rights are as configured: /inbox is not listed', async () => {
    assert.equal(await call<Buffer>((cb) => a.opendir('/inbox', cb)).then(() => 'opened', () => 'refused'), 'refused');
  });

  it('D moved into /inbox and an inbox file onto D/zz after the first READDIR: no later READDIR describes it', async () => {
    writeFileSync(join(home, 'inbox/secret.txt'), secret);
    utimesSync(join(home, 'inbox/secret.txt'), secretTime, secretTime);
    const handle = await call<Buffer>((cb) => a.opendir('/work/D', cb));
    const first = await readdir(handle);
    assert.ok(first && first.length > 0 && !first.some((e) => e.filename === 'zz'), 'zz is in a later batch');

    await call((cb) => a.unlink('/work/D/zz', cb));
    await call((cb) => b.rename('/work/D', '/inbox/D', cb));
    await call((cb) => b.rename('/inbox/secret.txt', '/inbox/D/zz', cb));
    assert.equal(readFileSync(join(home, 'inbox/D/zz'), 'utf8'), secret);

    const later: ssh2.FileEntry[] = [];
    let ended = 'eof';
    for (let i = 0; i < 10; i++) {
      const batch = await readdir(handle).catch((err: unknown) => ((ended = `refused: ${String(err)}`), false as const));
      if (!batch) break;
      later.push(...batch);
    }
    await call((cb) => a.close(handle, cb)).catch(() => undefined);
    const zz = later.find((e) => e.filename === 'zz');
    assert.equal(zz, undefined, `a READDIR described a file of the drop box: size ${zz?.attrs.size}, mtime ${zz?.attrs.mtime}`);
    assert.deepEqual(later, [], 'nothing more of D is listed once it is in the drop box');
    assert.match(ended, /moved meanwhile/);
  });
});
