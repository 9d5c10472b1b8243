import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type ssh2 from 'ssh2';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * An atomic upload stages its file (a hidden name no client can name) while
 * it looks whether its directory is still where its path says, rather than
 * after (one trip to the thread pool less per upload: session.ts,
 * stagedInPlace). Found moved, the upload is refused as before, and the
 * staged file must go with it. The lookup is made long as in
 * perm-moved-dir-read: a link in P leads 1,300 directories down and back up
 * to P, which stays pinned through it, while a second connection moves P
 * into /ro (list, download, rename, mkdir: no upload).
 */
describe('an upload through a long lookup whose directory was moved meanwhile creates nothing, staged or named', () => {
  let srv: TestServer;
  const user = 'stager';
  const password = 'stager password';
  let home: string;
  const conns: ssh2.Client[] = [];
  let a: ssh2.SFTPWrapper;
  let b: ssh2.SFTPWrapper;
  // P the 64th directory down: a walk keeps it open however deep it goes on.
  const p = '/work' + '/w'.repeat(62) + '/P';
  const down = Array.from({ length: 1300 }, () => 'x').join('/');

  before(async () => {
    srv = await TestServer.start({ users: [{ name: user, password, args: ['--perms', 'all'] }] });
    assert.equal(sluice(srv.dir, ['user', 'perm', user, '/ro', 'list,download,mkdir,rename'], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    home = srv.home(user);
    mkdirSync(join(home, 'ro'), { recursive: true });
    mkdirSync(join(home, p, down), { recursive: true });
    for (let i = 0; i < 2; i++) conns.push(await sshConnect({ port: srv.sftpPort, username: user, password }));
    a = await sftpOf(conns[0] as ssh2.Client);
    b = await sftpOf(conns[1] as ssh2.Client);
  });
  after(async () => {
    for (const c of conns) c.end();
    // Too deep for the stop's rmSync (its recursion overflows the stack): rm(1) walks it.
    execFileSync('rm', ['-rf', join(home, 'work'), join(home, 'ro')]);
    await srv.stop();
  });

  const upload = (path: string): Promise<string> =>
    call((cb) => a.writeFile(path, 'NEW', cb)).then(() => 'ok', (err: unknown) => `refused: ${String(err)}`);

  it('the rights are as configured: nothing can be uploaded into /ro', async () => {
    assert.match(await upload('/ro/a.txt'), /^refused/);
  });

  it('P moved into /ro while the upload to P/D/new.txt looks up its links: refused, and no file is left in P', async () => {
    // Made by the user (ssh2 sends the link's path second, as sluice takes it from a client that is not OpenSSH).
    await call((cb) => a.symlink(p, `${p}/${down}/L2`, cb));
    await call((cb) => a.symlink(`${p}/${down}/L2`, `${p}/D`, cb));
    assert.equal(readlinkSync(join(home, p, 'D')), `${down}/L2`);
    assert.equal(await upload(`${p}/D/first.txt`), 'ok', 'through the links, in place');
    assert.ok(existsSync(join(home, p, 'first.txt')));

    let pending = true;
    const uploading = upload(`${p}/D/new.txt`).finally(() => (pending = false));
    await sleep(15);
    await call((cb) => b.rename(p, '/ro/P', cb));
    const raced = pending;
    const got = await uploading;
    assert.ok(raced, 'the move landed while the upload was still looking up its links');
    assert.match(got, /^refused: .*moved meanwhile/);
    // The staged file went with the refusal: nothing under its hidden name, nothing under its own.
    assert.deepEqual(readdirSync(join(home, 'ro', 'P')).sort(), ['D', 'first.txt', 'x']);
  });
});
