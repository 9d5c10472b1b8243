import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/** What ssh2's client keeps of a channel and its wire protocol: enough to send a request a real client never would. */
interface RawChannel {
  outgoing: { id: number };
  _protocol: { subsystem(chan: number, name: string, wantReply: boolean): void; exec(chan: number, cmd: string, wantReply: boolean): void };
}

/*
 * A session channel runs one subsystem or command. Found by a review: a
 * second subsystem or exec request on a channel already running SFTP made
 * ssh2's accept() return nothing, and the TypeError that followed closed
 * the client's whole connection.
 */
describe('SSH: a second subsystem or exec request on a session channel', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
  });
  after(() => srv.stop());

  for (const [what, send] of [
    ['subsystem sftp', (raw: RawChannel) => raw._protocol.subsystem(raw.outgoing.id, 'sftp', true)],
    ['exec scp -t /x', (raw: RawChannel) => raw._protocol.exec(raw.outgoing.id, 'scp -t /x', true)],
    ['exec of a refused command', (raw: RawChannel) => raw._protocol.exec(raw.outgoing.id, 'ls;', true)],
  ] as const) {
    it(`${what}: refused; the connection and its SFTP session go on`, { timeout: 60_000 }, async () => {
      const c: ssh2.Client = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
      let closed = false;
      c.on('close', () => (closed = true));
      c.on('error', () => undefined);
      const sftp = await sftpOf(c);
      send(sftp as unknown as RawChannel);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(closed, false, 'the connection is still open');
      assert.equal(await call<string>((cb) => sftp.realpath('.', cb)), '/');
      c.end();
      assert.doesNotMatch(srv.log, /Cannot read properties of undefined/);
    });
  }
});
