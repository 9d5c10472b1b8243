import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { sshConnect } from './helpers/ssh.js';

/**
 * An SSH connection logs in once and opens its sessions later (OpenSSH's
 * ControlMaster keeps one for hours and runs every sftp/scp through it).
 * The account's rules that refuse a login must refuse those sessions too:
 * an operator who denies a client's address, or takes SFTP from a user,
 * means that client to get no more sessions, not only no more logins.
 */
describe('SSH sessions opened after the account rules changed', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      users: [
        { name: 'dana', password: 'dana password' },
        { name: 'paul', password: 'paul password' },
      ],
    });
  });
  after(() => srv?.stop());

  const sftpChannel = (c: Awaited<ReturnType<typeof sshConnect>>) => new Promise<void>((resolve, reject) => c.sftp((err) => (err ? reject(err) : resolve())));

  for (const [user, change] of [
    ['dana', ['--deny-ip', '127.0.0.0/8']],
    ['paul', ['--protocols', 'ftp,ftps']],
  ] as const) {
    it(`no new session once ${change.join(' ')} refuses the login`, async () => {
      const c = await sshConnect({ port: srv.sftpPort, username: user, password: `${user} password` });
      c.on('error', () => undefined);
      try {
        await sftpChannel(c);
        assert.equal(sluice(srv.dir, ['user', 'set', user, ...change]).code, 0);
        // A fresh login is refused now.
        await assert.rejects(sshConnect({ port: srv.sftpPort, username: user, password: `${user} password` }));
        // And so must a session on the standing one be.
        await assert.rejects(sftpChannel(c), 'a new SFTP session opened on the standing login');
      } finally {
        c.end();
      }
    });
  }
});
