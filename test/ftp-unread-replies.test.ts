import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/*
 * Found by an adversarial review: a client that pipelines commands and
 * never reads the replies made the server keep every reply (1.5 GB from
 * four connections in 36 s, before login) while its commands, answered at
 * once, held the event loop: another user's NOOP took 16 s.
 */
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;

describe('FTP: a client that sends commands and never reads the replies', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_FTP_TLS: 'optional' },
      users: [{ name: 'carol', password: 'carol password', args: ['--protocols', 'ftp,ftps,sftp'] }],
    });
  });
  after(() => srv.stop());

  it("stalls itself alone: the server's memory stays put and another session is answered at once", { timeout: 120_000 }, async (t) => {
    const other = await RawFtp.connect(srv.ftpPort, false, '127.0.0.1');
    await other.read();
    assert.equal((await other.login('carol', 'carol password')).code, 230);
    const before = rssMiB(srv.pid as number);
    // 4 MiB of HELP each (about 700,000 commands, each answered with a dozen lines), sent and never read.
    const flood = Buffer.from('HELP\r\n'.repeat(700_000));
    const hogs = await Promise.all(
      ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'].map(async (from) => {
        const s = net.connect({ port: srv.ftpPort, host: '127.0.0.1', localAddress: from });
        s.on('error', () => undefined);
        await new Promise((r) => s.once('connect', r));
        s.pause();
        s.write(flood);
        return s;
      }),
    );
    let worst = 0;
    let peak = before;
    for (let i = 0; i < 20; i++) {
      const t0 = performance.now();
      assert.equal((await other.cmd('NOOP')).code, 200);
      worst = Math.max(worst, performance.now() - t0);
      peak = Math.max(peak, rssMiB(srv.pid as number));
      await new Promise((r) => setTimeout(r, 250));
    }
    for (const s of hogs) s.destroy();
    other.close();
    t.diagnostic(`server RSS ${before.toFixed(0)} → peak ${peak.toFixed(0)} MiB; another session's NOOP at most ${worst.toFixed(0)} ms`);
    assert.ok(peak - before < 64, `server RSS grew ${(peak - before).toFixed(0)} MiB (${before.toFixed(0)} → ${peak.toFixed(0)})`);
    assert.ok(worst < 1000, `another session's NOOP took up to ${worst.toFixed(0)} ms`);
  });
});
