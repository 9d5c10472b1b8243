import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { REKEY_BURST, REKEY_REFILL_MS, RekeyAllowance } from '../src/sftp/rekeys.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/** ssh2's client has no rekey(): its wire protocol starts one. */
interface RawClient {
  _protocol: { rekey(): void };
}

/** One key re-exchange started by `c`: true once it completed, false if the connection closed instead. */
function rekey(c: ssh2.Client): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (): void => {
      c.off('close', closed);
      resolve(true);
    };
    const closed = (): void => {
      c.off('handshake', done);
      resolve(false);
    };
    c.once('handshake', done);
    c.once('close', closed);
    (c as unknown as RawClient)._protocol.rekey();
  });
}

/*
 * ssh2 does each key re-exchange's key agreement and signature on the event
 * loop, and a client may start one whenever it likes: one connection
 * re-keying back to back took 40 % of the loop from every other session.
 */
describe('SSH: key re-exchanges per connection', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
  });
  after(() => srv.stop());

  const login = (): Promise<ssh2.Client> => sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });

  it('a client re-keying back to back is disconnected past the burst; another session goes on', { timeout: 60_000 }, async () => {
    const other = await login();
    const sftp = await sftpOf(other);
    const flooder = await login();
    flooder.on('error', () => undefined);
    // Without it each exchange waits out the client's Nagle and the server's delayed ACKs.
    flooder.setNoDelay(true);

    let flooding = true;
    const stats = (async () => {
      let n = 0;
      while (flooding) {
        await call<unknown>((cb) => sftp.stat('.', cb));
        n++;
      }
      return n;
    })();
    let completed = 0;
    for (let i = 0; i < 5 * REKEY_BURST && (await rekey(flooder)); i++) completed++;
    flooding = false;

    assert.ok(completed < 5 * REKEY_BURST, `the flooding client was not disconnected (${completed} re-exchanges)`);
    // The burst, and whatever came back while the flood went on (it takes well under a refill).
    assert.ok(completed >= REKEY_BURST && completed <= REKEY_BURST + 1, `${completed} re-exchanges completed`);
    assert.ok((await stats) > 0, 'the other session was answered during the flood');
    assert.equal((await call<{ isDirectory(): boolean }>((cb) => sftp.stat('.', cb))).isDirectory(), true);
    await srv.logs(/key re-exchange refused: too many on this connection/);
    other.end();
  });

  it('a client re-keying a few times, slowly, stays connected', { timeout: 60_000 }, async () => {
    const c = await login();
    c.setNoDelay(true);
    const sftp = await sftpOf(c);
    for (let i = 0; i < 4; i++) {
      assert.equal(await rekey(c), true, `re-exchange ${i + 1} completed`);
      await new Promise((r) => setTimeout(r, 150));
    }
    assert.equal((await call<{ isDirectory(): boolean }>((cb) => sftp.stat('.', cb))).isDirectory(), true);
    c.end();
  });

  it('the allowance: a burst, then one back per refill; a re-exchange every 3 s (1 GiB at 350 MB/s) never runs out', () => {
    const burst = new RekeyAllowance(0);
    for (let i = 0; i < REKEY_BURST; i++) assert.equal(burst.take(0), true);
    assert.equal(burst.take(0), false);
    assert.equal(burst.take(REKEY_REFILL_MS), true);
    assert.equal(burst.take(REKEY_REFILL_MS), false);

    const steady = new RekeyAllowance(0);
    for (let i = 1; i <= 10_000; i++) assert.equal(steady.take(i * 3000), true, `re-exchange ${i}`);
  });
});
