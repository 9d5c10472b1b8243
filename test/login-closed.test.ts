import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { TestServer } from './helpers/server.js';

describe('a client that leaves while its good login completes', () => {
  let srv: TestServer;
  before(async () => {
    // No kept passwords: each login must take argon2's time, for the client to be gone before it ends.
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\nauth:\n  passwordCache: 0\n', users: [{ name: 'alice', password: 'alice password' }] });
  });
  after(() => srv?.stop());

  it('is recorded as connection-closed, not as a session limit, and scores nothing', async () => {
    for (let i = 0; i < 3; i++) {
      const socket = net.connect(srv.ftpPort, '127.0.0.1');
      await new Promise<void>((resolve) => socket.once('data', () => resolve()));
      // Gone while the password is checked (argon2 takes far longer than the close takes to arrive).
      socket.write('USER alice\r\nPASS alice password\r\n');
      await new Promise((r) => setTimeout(r, 15));
      socket.destroy();
    }
    const failed = (await srv.audit(1500)).filter((l) => l.event === 'login-failed');
    assert.equal(failed.length, 3, JSON.stringify(failed));
    assert.ok(failed.every((l) => l.reason === 'connection-closed'), JSON.stringify(failed.map((l) => l.reason)));
    assert.deepEqual(srv.bans(), []);
  });
});
