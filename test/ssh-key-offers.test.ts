import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { TestServer } from './helpers/server.js';
import { userKeyPair } from './helpers/ssh.js';

/*
 * An SSH client asks whether a key would do before it signs. Found by a
 * review: those questions were unbounded and uncounted, 199 keys in 0.3 s
 * on one connection, a free test of which public key a user has. Ten
 * unknown keys a connection now; an agent's handful still gets through.
 */
describe('SSH: keys offered without a signature', () => {
  let srv: TestServer;
  let dir: string;
  const own = userKeyPair('carol');
  const strangers = Array.from({ length: 12 }, () => userKeyPair().private);
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-offers-'));
    writeFileSync(join(dir, 'carol.pub'), own.public);
    srv = await TestServer.start({ users: [{ name: 'carol', password: 'carol password', args: ['--key', join(dir, 'carol.pub')] }] });
  });
  after(async () => {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Offer `unknown` strangers' keys, then carol's own: whether the login went through, and how many offers were made. */
  const offer = (unknown: number, localAddress = '127.0.0.1') =>
    new Promise<{ ready: boolean; offers: number }>((resolve) => {
      const c = new ssh2.Client();
      let offers = 0;
      let ready = false;
      c.on('ready', () => {
        ready = true;
        c.end();
      });
      c.on('error', () => undefined);
      c.on('close', () => resolve({ ready, offers }));
      c.connect({
        host: '127.0.0.1',
        localAddress,
        port: srv.sftpPort,
        username: 'carol',
        readyTimeout: 30_000,
        authHandler: (_methods, _partial, next) => {
          offers++;
          if (offers > unknown + 1) return next(false as never);
          next({ type: 'publickey', username: 'carol', key: offers <= unknown ? strangers[offers - 1] : own.private } as never);
        },
      });
    });

  it('an agent offering nine other keys first still logs in', { timeout: 60_000 }, async () => {
    assert.deepEqual(await offer(9), { ready: true, offers: 10 });
  });

  it('past ten unknown keys the connection is closed, the right key then gets no hearing', { timeout: 60_000 }, async () => {
    const r = await offer(12);
    assert.equal(r.ready, false);
    assert.ok(r.offers <= 11, `${r.offers} offers heard`);
  });

  it('each connection closed so is one failure for the defender: reconnecting for more keys gets the address banned', { timeout: 120_000 }, async () => {
    // Found by a review of the bound above: without a score, twenty connections asked about 199 keys unnoticed.
    for (let i = 0; i < 5; i++) assert.equal((await offer(12, '127.0.0.9')).ready, false);
    const ban = (await srv.auditUntil((l) => l.event === 'ban')).find((l) => l.event === 'ban');
    assert.equal(ban?.address, '127.0.0.9');
    assert.deepEqual(await offer(0, '127.0.0.9'), { ready: false, offers: 0 }, 'banned: not even asked');
  });
});
