import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/**
 * An SSH connection logs in once and opens its sessions afterwards: a user
 * disabled, removed or replaced in between must not get one on the old login,
 * and one whose rights or quota changed gets a session under the new ones.
 */
describe('SSH sessions opened after the account changed', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      users: [
        { name: 'eve', password: 'eve password' },
        { name: 'rex', password: 'rex password' },
        { name: 'ivy', password: 'ivy password' },
      ],
    });
  });
  after(() => srv?.stop());

  const sftpChannel = (c: Awaited<ReturnType<typeof sshConnect>>) => new Promise<void>((resolve, reject) => c.sftp((err) => (err ? reject(err) : resolve())));

  it('a user disabled after the login gets no SFTP or SCP session, and the connection is closed', async () => {
    const c = await sshConnect({ port: srv.sftpPort, username: 'eve', password: 'eve password' });
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    assert.equal(sluice(srv.dir, ['user', 'disable', 'eve']).code, 0);
    await assert.rejects(sftpChannel(c));
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('still connected')), 5000))]);
  });

  it("a session opened after the user's rights were narrowed holds to the new ones", async () => {
    const c = await sshConnect({ port: srv.sftpPort, username: 'ivy', password: 'ivy password' });
    try {
      assert.equal(sluice(srv.dir, ['user', 'set', 'ivy', '--perms', 'list,download']).code, 0);
      const sftp = await sftpOf(c);
      await assert.rejects(call((cb) => sftp.writeFile('/new.txt', 'x', cb)), /denied/i);
      assert.deepEqual(readdirSync(srv.home('ivy')), []);
    } finally {
      c.end();
    }
  });

  it('a user removed after the login: the old login opens nothing (SCP exec)', async () => {
    const c = await sshConnect({ port: srv.sftpPort, username: 'rex', password: 'rex password' });
    c.on('error', () => undefined);
    assert.equal(sluice(srv.dir, ['user', 'remove', 'rex']).code, 0);
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.exec('scp -f /x', () => undefined);
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the old login still serves')), 5000))]);
  });
});
