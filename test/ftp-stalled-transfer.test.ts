import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn, startUpload, type RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * Found by an adversarial review: with a transfer running, the idle timer
 * only refreshed itself, so a client that never read its download, or
 * sent ten bytes of an upload and then nothing, held its session, its
 * descriptors and its quota reservation for ever. A transfer that moves
 * no byte between two looks of the idle timer (ftp.idleTimeout) now ends
 * the connection, whatever commands its client sends meanwhile.
 */
describe('FTP: a transfer that stalls', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  idleTimeout: 10\n',
      env: { SLUICE_FTP_TLS: 'optional' },
      users: [{ name: 'alice', password: 'alice password', args: ['--protocols', 'ftp,ftps,sftp', '--perms', 'all'] }],
    });
    writeFileSync(join(srv.home('alice'), 'big.bin'), Buffer.alloc(64 * 1024 * 1024, 7));
    // A listing of about 10 MB, to be read slowly: listings move no file bytes, only the data connection's.
    mkdirSync(join(srv.home('alice'), 'many'));
    for (let i = 0; i < 40_000; i++) writeFileSync(join(srv.home('alice'), 'many', `${String(i).padStart(6, '0')}-${'n'.repeat(180)}`), '');
  });
  after(() => srv.stop());

  /** Until the control connection ends (45 s at most): its last reply, and how long after `since` it ended. */
  const ending = async (c: RawFtp, since: number) => {
    let last = null;
    const more = () => (Date.now() - since < 45_000 ? c.read(60_000).catch(() => null) : null);
    for (let r = await more(); r; r = await more()) last = r;
    return { last, after: Date.now() - since };
  };

  it('ends an upload that stops sending and a download never read, within two idle timeouts, not one that moves slowly; the upload leaves nothing', { timeout: 90_000 }, async () => {
    const started = Date.now();
    const up = await loggedIn(srv.ftpPort, 'alice', 'alice password');
    const upData = await startUpload(up, 'stalled.bin');
    upData.write(Buffer.alloc(10, 1));
    const down = await loggedIn(srv.ftpPort, 'alice', 'alice password');
    await down.cmd('TYPE I');
    const pasv = await down.passive(false);
    down.send('RETR big.bin\r\n');
    const downData = await pasv.open();
    downData.pause();
    assert.equal((await down.read())?.code, 150);
    // Its client sends NOOP (allowed during a transfer) every few seconds: the commands are no bytes of the
    // transfer (found by a review: each put the idle look off again, and the stalled download was held for good).
    const pinger = setInterval(() => down.closed || down.send('NOOP\r\n'), 3000);
    // And two that move, slowly, never idle for idleTimeout: a download, and a listing, whose file
    // bytes stay 0 (found by a review of the first version of this check). The server sees its writes
    // taken in steps: the kernel wakes a writer only once a third of the socket's send buffer (up to
    // 4 MiB here) is free, so about 1.4 MB at a time. 128 KiB a second took longer than an idle window
    // to free that, and was judged stalled once in a loaded CI run; 256 KiB a second frees it twice
    // over in one, and still reads the listing (8.4 MB) for 30 s, past the stalled ones' ending.
    const slowOnes = await Promise.all(
      ['RETR big.bin', 'LIST many'].map(async (command) => {
        const c = await loggedIn(srv.ftpPort, 'alice', 'alice password');
        await c.cmd('TYPE I');
        const pasv = await c.passive(false);
        c.send(`${command}\r\n`);
        const data = await pasv.open();
        const slow = { command, c, data, bytes: 0, timer: null as NodeJS.Timeout | null };
        data.on('data', (chunk: Buffer) => {
          slow.bytes += chunk.length;
          data.pause();
          slow.timer = setTimeout(() => data.resume(), (chunk.length / (256 * 1024)) * 1000);
        });
        assert.equal((await c.read())?.code, 150, command);
        return slow;
      }),
    );
    const [u, d] = await Promise.all([ending(up, started), ending(down, started)]);
    clearInterval(pinger);
    for (const [what, r] of [['upload', u], ['download', d]] as const) {
      assert.ok(r.after < 35_000, `${what} ended after ${r.after} ms`);
      assert.equal(r.last?.code, 421, `${what}: ${JSON.stringify(r.last)}`);
    }
    // By now (20 s or more in) the stalled ones have ended; the slow ones must still be going.
    for (const slow of slowOnes) {
      assert.equal(await slow.c.read(3000).catch(() => 'nothing'), 'nothing', `${slow.command}: moving, it got no reply`);
      assert.ok(slow.bytes > 1024 * 1024, `${slow.command} read ${slow.bytes} bytes`);
    }
    for (const slow of slowOnes) {
      if (slow.timer) clearTimeout(slow.timer);
      slow.data.destroy();
      slow.c.close();
    }
    upData.destroy();
    downData.destroy();
    assert.ok(!existsSync(join(srv.home('alice'), 'stalled.bin')), 'no file under the upload\'s name');
    assert.deepEqual(readdirSync(srv.home('alice')).filter((n) => n.startsWith('.sluice-upload-')), [], 'nor a staged one');
    const upload = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/stalled.bin')).find((l) => l.event === 'upload' && l.path === '/stalled.bin');
    assert.equal(upload?.result, 'aborted');
  });
});
