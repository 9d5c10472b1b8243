import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { adminRequest, type AdminTarget } from './helpers/admin-http.js';
import { sluice } from './helpers/cli.js';
import { codeOrEnded, loggedIn } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call as sftpCall, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

/*
 * A session is rooted where its login read the user's home. Found by an
 * adversarial review of be2dc1f: a home changed through the API or `sluice
 * user set --home` left the live sessions serving the old one. Homes are
 * kept from nesting only as they are stored, so an administrator could then
 * make another user's home inside the old one, where such a session had put
 * a symlink to a third user's home under that name (`symlink ../carol`
 * inside a subdirectory, then renamed into place): the new user's login
 * followed it and served carol's files. A home changed now ends the sessions
 * that serve the old one, as a permission taken away does; a node's look at
 * a shared store's notice does the same (outlived-by), and a login under way
 * (user-change-races) opens no session in the old home.
 */
describe('a home changed ends the live sessions that serve the old one', () => {
  let srv: TestServer;
  let api: AdminTarget;
  const patch = (user: string, body: unknown) => adminRequest(api, 'PATCH', `/api/v1/users/${user}`, { body });
  const closed = (c: ssh2.Client) => new Promise<void>((resolve) => c.once('close', () => resolve()));

  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_ADMIN_LISTEN: './admin.sock' },
      yaml: 'ftp:\n  tls: optional\n',
      users: [
        { name: 'ann', password: 'ann-secret-1', args: ['--perms', 'all'] },
        { name: 'bea', password: 'bea-secret-1' },
        { name: 'cyd', password: 'cyd-secret-1' },
      ],
    });
    api = { socketPath: join(srv.dir, 'admin.sock') };
  });
  after(async () => {
    await srv?.stop();
  });

  it('PATCH home: the FTP and SFTP sessions open before end, and a new login serves the new home', { timeout: 60_000 }, async () => {
    const ftp = await loggedIn(srv.ftpPort, 'ann', 'ann-secret-1');
    const ssh = await sshConnect({ port: srv.sftpPort, username: 'ann', password: 'ann-secret-1' });
    const sshClosed = closed(ssh);
    ssh.on('error', () => undefined);
    try {
      const sftp = await sftpOf(ssh);
      assert.equal(await statusOf(sftpCall((cb) => sftp.mkdir('/sub', cb))), 'ok');
      const moved = join(srv.dir, 'ann-moved');
      const r = await patch('ann', { home: moved });
      assert.equal(r.status, 200, r.text);
      assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 2);
      const after = await codeOrEnded(ftp, 'MKD after-move');
      assert.ok(after === 421 || after === 'ended', `the FTP session went on (${after}) in the old home`);
      // Closed by the server: the old session makes no link there any more (the chain's first step).
      await sshClosed;

      writeFileSync(join(moved, 'new-home.txt'), 'here\n');
      const again = await sshConnect({ port: srv.sftpPort, username: 'ann', password: 'ann-secret-1' });
      try {
        const sftpAgain = await sftpOf(again);
        const names = (await sftpCall<ssh2.FileEntry[]>((cb) => sftpAgain.readdir('/', cb))).map((e) => e.filename);
        assert.deepEqual(names, ['new-home.txt']);
      } finally {
        again.end();
      }
    } finally {
      ftp.close();
      ssh.end();
    }
  });

  it('sluice user set --home with a server running ends them too', { timeout: 60_000 }, async () => {
    const c = await loggedIn(srv.ftpPort, 'bea', 'bea-secret-1');
    try {
      const r = sluice(srv.dir, ['user', 'set', 'bea', '--home', join(srv.dir, 'bea-moved')], '', { SLUICE_ADMIN_LISTEN: './admin.sock' });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'updated user bea; 1 live session(s) ended\n');
      const after = await codeOrEnded(c, 'MKD after-move');
      assert.ok(after === 421 || after === 'ended', `the FTP session went on (${after}) in the old home`);
    } finally {
      c.close();
    }
  });

  it('the home given again as it is ends nothing', { timeout: 60_000 }, async () => {
    const c = await loggedIn(srv.ftpPort, 'cyd', 'cyd-secret-1');
    try {
      const r = await patch('cyd', { home: srv.home('cyd') });
      assert.equal(r.status, 200, r.text);
      assert.equal((r.json as { sessionsEnded: number }).sessionsEnded, 0);
      assert.equal(await codeOrEnded(c, 'MKD still'), 257);
    } finally {
      c.close();
    }
  });
});
