import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ScanTurns, SCANS_PER_USER } from '../src/session/scan-turns.js';
import { SlowClamd } from './helpers/clamd.js';
import { TestServer } from './helpers/server.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/*
 * clamd scans a few files at once (its MaxThreads) and queues the rest. Found
 * by an adversarial review: one user's many uploads at once (files slow to
 * scan, archives clamd unpacks) took every place at the scanner, and another
 * user's upload waited behind them past uploads.scanTimeout and was refused.
 * A user's scans now take turns: at most a few at the scanner at once, the
 * rest waiting in the server, against their own scanTimeout.
 */
describe("one user's uploads do not keep another's from the scanner", () => {
  // One scan at a time, 700 ms each: eight of alice's take 5.6 s, past the 4 s scanTimeout.
  const clamd = new SlowClamd(700, 1);
  let srv: TestServer;
  before(async () => {
    await clamd.start();
    srv = await TestServer.start({
      yaml: `uploads:\n  scan: clamd\n  clamdSocket: ${clamd.socket}\n  scanTimeout: 4\n`,
      users: [
        { name: 'alice', password: 'alice password' },
        { name: 'bob', password: 'bob password' },
      ],
    });
  });
  after(async () => {
    await srv?.stop();
    await clamd.cleanup();
  });

  it("bob's upload is scanned in time while alice has eight waiting", { timeout: 60_000 }, async () => {
    const alice = await sshConnect({ port: srv.sftpPort, username: 'alice', password: 'alice password' });
    const bob = await sshConnect({ port: srv.sftpPort, username: 'bob', password: 'bob password' });
    try {
      const [aliceSftp, bobSftp] = await Promise.all([sftpOf(alice), sftpOf(bob)]);
      const flood = Array.from({ length: 8 }, (_, i) => call((cb) => aliceSftp.writeFile(`/a${i}.txt`, `alice ${i}\n`, cb)).then(() => 'ok', (err: Error) => err.message));
      // bob comes once alice's first uploads have reached the scanner.
      for (let i = 0; i < 100 && clamd.streams < 2; i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(clamd.streams >= 2, 'alice reached the scanner');
      await call((cb) => bobSftp.writeFile('/b.txt', 'bob\n', cb));
      await Promise.all(flood);
    } finally {
      alice.end();
      bob.end();
    }
    const record = (await srv.audit(0)).find((r) => r.event === 'upload' && r.user === 'bob');
    assert.equal(record?.result, 'ok', JSON.stringify(record));
    assert.equal(record?.scan, 'clean');
  });
});

describe('ScanTurns', () => {
  it('lets SCANS_PER_USER of a user through, the next when one ends; a wait given up takes no turn; other users pass', { timeout: 5000 }, async () => {
    const turns = new ScanTurns();
    const never = new AbortController().signal;
    const first = await Promise.all(Array.from({ length: SCANS_PER_USER }, () => turns.take('alice', never)));
    const givenUp = new AbortController();
    const abandoned = turns.take('alice', givenUp.signal);
    let nextCame = false;
    const next = turns.take('alice', never).then((release) => ((nextCame = true), release));
    (await turns.take('bob', never))();
    givenUp.abort(new Error('deadline'));
    await assert.rejects(abandoned, /deadline/);
    await new Promise((r) => setImmediate(r));
    assert.equal(nextCame, false, 'all of alice\'s turns are taken');
    first[0]?.();
    (await next)();
    for (const release of first.slice(1)) release();
    // Every turn given back: alice takes SCANS_PER_USER again at once.
    await Promise.all(Array.from({ length: SCANS_PER_USER }, () => turns.take('alice', never)));
  });
});
