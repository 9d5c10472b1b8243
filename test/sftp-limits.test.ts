import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect, statusOf } from './helpers/ssh.js';

const FAILURE = 4;

/** Open `count` read handles on `/f.txt`; all must succeed. */
async function openMany(sftp: ssh2.SFTPWrapper, count: number): Promise<Buffer[]> {
  return Promise.all(Array.from({ length: count }, () => call<Buffer>((cb) => sftp.open('/f.txt', 'r', cb))));
}

describe('SFTP per-connection and per-user limits (defaults)', () => {
  let srv: TestServer;
  const login = (user = 'uma') => sshConnect({ port: srv.sftpPort, username: user, password: `${user} password` });

  before(async () => {
    srv = await TestServer.start({
      users: [
        { name: 'uma', password: 'uma password' },
        { name: 'bob', password: 'bob password' },
      ],
    });
    for (const u of ['uma', 'bob']) writeFileSync(join(srv.home(u), 'f.txt'), 'x');
  });
  after(() => srv.stop());

  it('refuses an eleventh session channel on one connection, and takes one again once a channel closes', async () => {
    const conn = await login();
    try {
      const channels = await Promise.all(Array.from({ length: 10 }, () => sftpOf(conn)));
      await assert.rejects(sftpOf(conn), /open failure|Channel/i, 'the 11th channel is refused');
      // The refused channel did not hurt the open ones.
      assert.equal((await call<ssh2.Stats>((cb) => (channels[0] as ssh2.SFTPWrapper).stat('/f.txt', cb))).size, 1);
      (channels[9] as ssh2.SFTPWrapper).end();
      let again: ssh2.SFTPWrapper | null = null;
      for (let i = 0; i < 50 && !again; i++) {
        again = await sftpOf(conn).catch(() => null);
        if (!again) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(again, 'a channel slot came back after a close');
    } finally {
      conn.end();
    }
  });

  it('caps open handles per user across connections and channels (256), not touching other users', async () => {
    const a = await login();
    const b = await login();
    const other = await login('bob');
    try {
      const [a1, a2, b1] = [await sftpOf(a), await sftpOf(a), await sftpOf(b)];
      const held = await openMany(a1, 100);
      await openMany(a2, 100);
      await openMany(b1, 56);
      // The 257th handle of this user, on a fresh channel of a fresh connection: refused.
      assert.equal(await statusOf(call((cb) => b1.open('/f.txt', 'r', cb))), FAILURE);
      assert.equal(await statusOf(call((cb) => b1.opendir('/', cb))), FAILURE);
      // Another user is not affected.
      await openMany(await sftpOf(other), 10);
      // Closing a handle frees a slot; ending a connection frees all of its handles.
      await call((cb) => a1.close(held[0] as Buffer, cb));
      await call<Buffer>((cb) => b1.open('/f.txt', 'r', cb));
      assert.equal(await statusOf(call((cb) => b1.open('/f.txt', 'r', cb))), FAILURE);
      a.end();
      // The server frees them when it sees the connection go: wait for one slot, then take 150.
      let probe: Buffer | null = null;
      for (let i = 0; i < 100 && !probe; i++) {
        probe = await call<Buffer>((cb) => b1.open('/f.txt', 'r', cb)).catch(() => null);
        if (!probe) await new Promise((r) => setTimeout(r, 100));
      }
      assert.ok(probe, "the closed connection's handles were given back");
      await call((cb) => b1.close(probe as Buffer, cb));
      assert.equal((await openMany(b1, 150)).length, 150);
    } finally {
      for (const c of [a, b, other]) c.end();
    }
  });
});
