import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mkdirSync, writeFileSync } from 'node:fs';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { codeOrEnded, loggedIn, RawFtp } from './helpers/ftp-raw.js';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call as sftpCall, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

/*
 * A session's permissions are those read at its login. Taking a permission
 * away through the API (PATCH permissions, PUT /users/:name/permissions) left
 * every session open before with it: an FTP session went on making
 * directories after mkdir was taken from the home and after the home was set
 * to no permission at all. A change that takes something away now ends the
 * user's live sessions, as removing a key does; one that only adds ends none
 * and reaches them at once: before, they went on under the permissions of
 * their login, so one could move a file into a directory a new override
 * widened (which a later login may not) for that later login to delete it.
 */
describe('admin API: permissions taken away end the live sessions that had them', () => {
  let srv: TestServer;
  let api: AdminTarget;
  const call = (method: string, path: string, body: unknown) => adminRequest(api, method, `/api/v1${path}`, { body });
  const login = (user: string, password: string) => loggedIn(srv.ftpPort, user, password);
  const mkd = (c: RawFtp, dir: string) => codeOrEnded(c, `MKD ${dir}`);

  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_ADMIN_LISTEN: './admin.sock' },
      yaml: 'ftp:\n  tls: optional\n',
      users: [
        { name: 'dee', password: 'dee-secret-1' },
        { name: 'eve', password: 'eve-secret-1' },
        { name: 'fay', password: 'fay-secret-1' },
        { name: 'gus', password: 'gus-secret-1' },
        { name: 'hal', password: 'hal-secret-1', args: ['--perms', 'list,download,upload'] },
        { name: 'ivy', password: 'ivy-secret-1', args: ['--perms', 'list,download,upload,rename'] },
        { name: 'jo', password: 'jo-secret-12', args: ['--perms', 'list,download,upload,mkdir'] },
        { name: 'kit', password: 'kit-secret-1' },
      ],
    });
    api = { socketPath: join(srv.dir, 'admin.sock') };
  });
  after(async () => {
    await srv?.stop();
  });

  it('PATCH permissions without mkdir: the session open before makes no more directories', { timeout: 60_000 }, async () => {
    const c = await login('dee', 'dee-secret-1');
    assert.equal(await mkd(c, 'one'), 257);
    const r = await call('PATCH', '/users/dee', { permissions: ['list', 'download'] });
    assert.equal(r.status, 200, r.text);
    assert.notEqual(await mkd(c, 'two'), 257, 'MKD still allowed after mkdir was taken away');
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 1);
    c.close();
  });

  it('PUT /permissions narrowing a directory: the session open before is ended', { timeout: 60_000 }, async () => {
    const c = await login('eve', 'eve-secret-1');
    assert.equal(await mkd(c, 'in'), 257);
    const r = await call('PUT', '/users/eve/permissions', { path: '/in', permissions: ['list'] });
    assert.equal(r.status, 200, r.text);
    assert.notEqual(await mkd(c, 'in/sub'), 257, 'MKD still allowed in /in after its override took mkdir away');
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 1);
    c.close();
  });

  it('permissions only added end nothing', { timeout: 60_000 }, async () => {
    const c = await login('fay', 'fay-secret-1');
    const r = await call('PUT', '/users/fay/permissions', { path: '/x', permissions: ['list', 'download', 'upload', 'overwrite', 'delete', 'rename', 'mkdir', 'rmdir', 'chtimes', 'chmod'] });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 0);
    const p = await call('PATCH', '/users/fay', { permissions: ['list', 'download', 'upload', 'overwrite', 'delete', 'rename', 'mkdir', 'rmdir', 'chtimes', 'symlink'] });
    assert.equal((p.json as { sessionsEnded: number }).sessionsEnded, 0);
    assert.equal(await mkd(c, 'still'), 257);
    c.close();
  });

  it('disabled and narrowed in one PATCH: the session is ended and counted once', { timeout: 60_000 }, async () => {
    const c = await login('gus', 'gus-secret-1');
    const r = await call('PATCH', '/users/gus', { enabled: false, permissions: ['list'] });
    assert.equal(r.status, 200, r.text);
    assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 1);
    assert.notEqual(await mkd(c, 'after'), 257);
    c.close();
  });

  it('permissions added reach the sessions open before at once, over FTP and SFTP', { timeout: 60_000 }, async () => {
    const c = await login('hal', 'hal-secret-1');
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'hal', password: 'hal-secret-1' });
    try {
      const sftp = await sftpOf(ssh);
      assert.notEqual(await mkd(c, 'before'), 257, 'mkdir is not given yet');
      assert.notEqual(await statusOf(sftpCall((cb) => sftp.mkdir('/before', cb))), 'ok');
      const r = await call('PATCH', '/users/hal', { permissions: ['list', 'download', 'upload', 'mkdir'] });
      assert.equal(r.status, 200, r.text);
      assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 0);
      assert.equal(await mkd(c, 'ftp-after'), 257, 'the FTP session open before did not take the mkdir given');
      assert.equal(await statusOf(sftpCall((cb) => sftp.mkdir('/sftp-after', cb))), 'ok', 'the SFTP session open before did not take the mkdir given');
    } finally {
      c.close();
      ssh.end();
    }
  });

  it('an override added bounds the moves of the sessions open before', { timeout: 60_000 }, async () => {
    mkdirSync(join(srv.home('ivy'), 'drop'), { recursive: true });
    writeFileSync(join(srv.home('ivy'), 'keep.txt'), 'not to be deleted\n');
    const c = await login('ivy', 'ivy-secret-1');
    try {
      const r = await call('PUT', '/users/ivy/permissions', { path: '/drop', permissions: ['list', 'download', 'upload', 'rename', 'delete'] });
      assert.equal(r.status, 200, r.text);
      assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 0);
      // /drop now gives delete, which the home does not: keep.txt must not get there, where a new login could delete it.
      assert.equal(await codeOrEnded(c, 'RNFR keep.txt'), 350);
      assert.notEqual(await codeOrEnded(c, 'RNTO drop/keep.txt'), 250, 'the session open before moved a file into the widened /drop');
    } finally {
      c.close();
    }
  });

  it("an SSH connection of several channels: the session of every channel ends for the change, its upload and the login's logout saying why", { timeout: 60_000 }, async () => {
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'kit', password: 'kit-secret-1' });
    ssh.on('error', () => undefined);
    try {
      const gone = new Promise<void>((resolve) => ssh.once('close', () => resolve()));
      // Channels multiplexed on one connection (OpenSSH's ControlMaster, a GUI client), an upload on each but the last.
      const channels = [await sftpOf(ssh), await sftpOf(ssh), await sftpOf(ssh)];
      for (const [i, sftp] of channels.slice(0, 2).entries()) {
        const handle = await sftpCall<Buffer>((cb) => sftp.open(`/up${i}.bin`, 'w', cb));
        await sftpCall((cb) => sftp.write(handle, Buffer.alloc(4096, 1), 0, 4096, 0, cb));
      }
      const r = await call('PATCH', '/users/kit', { permissions: ['list', 'download'] });
      assert.equal(r.status, 200, r.text);
      assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 1);
      await gone;
      const why = 'permissions taken away by an administrator';
      let records: Record<string, unknown>[] = [];
      // The login's one logout comes after every channel's session has ended (SharedLogin).
      for (let i = 0; i < 50 && !records.some((x) => x.event === 'logout'); i++) records = (await srv.audit(200)).filter((x) => x.user === 'kit');
      // Only the first channel's did, before: the others were cut by the connection's close, 'channel closed', their logouts without a reason.
      const uploads = records.filter((x) => x.event === 'upload').map((x) => `${String(x.path)} ${String(x.result)}: ${String(x.reason)}`);
      assert.deepEqual(uploads.sort(), [`/up0.bin aborted: ${why}`, `/up1.bin aborted: ${why}`]);
      assert.deepEqual(records.filter((x) => x.event === 'logout').map((x) => x.reason), [why]);
    } finally {
      ssh.end();
    }
  });

  it('a renewal after a narrowing written without the API ends the session that holds more, as the look of a node does', { timeout: 60_000 }, async () => {
    const c = await login('jo', 'jo-secret-12');
    try {
      assert.equal(await mkd(c, 'one'), 257);
      // The CLI with the API off writes the store only: the session still holds mkdir.
      const set = sluice(srv.dir, ['user', 'set', 'jo', '--perms', 'list,download'], '', { SLUICE_ADMIN_LISTEN: '' });
      assert.equal(set.code, 0, set.stderr);
      assert.equal(await mkd(c, 'two'), 257, 'the change reached the session without being told');
      const r = await call('POST', '/users/jo/sessions/recheck', undefined);
      assert.equal(r.status, 200, r.text);
      assert.equal((r.json as { sessionsRenewed: number }).sessionsRenewed, 0);
      const after = await mkd(c, 'three');
      assert.ok(after === 421 || after === 'ended', `the session went on (${after}) after the renewal found it holding mkdir, which the stored rules no longer give`);
    } finally {
      c.close();
    }
  });
});
