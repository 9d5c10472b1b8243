import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startedClamd, type Clamd } from './helpers/clamd.js';
import { TestServer } from './helpers/server.js';

/*
 * clamd's "... ERROR" replies do not change when asked again: a file over
 * its StreamMaxLength is refused each time, after being streamed whole. The
 * upload fails at once with the reason, instead of re-sending the file until
 * scanTimeout; only a scanner that cannot be reached is asked again.
 */
describe('a file clamd refuses to scan (a real clamd with StreamMaxLength 1M)', () => {
  let clamd: Clamd;
  let srv: TestServer;
  let local: string;

  before(async (t) => {
    const started = await startedClamd(t, { streamMaxLength: '1M' });
    if (!started) return;
    clamd = started;
    local = mkdtempSync(join(tmpdir(), 'sluice-scan-refused-'));
    writeFileSync(join(local, 'big.bin'), Buffer.alloc(3 << 20, 'a'));
    srv = await TestServer.start({
      yaml: `ftp:\n  tls: optional\nuploads:\n  scan: clamd\n  clamdSocket: ${clamd.socket}\n  scanTimeout: 20\n`,
      users: [{ name: 'alice', password: 'alice password' }],
    });
  });
  after(async () => {
    await srv?.stop();
    await clamd?.cleanup();
    if (local) rmSync(local, { recursive: true, force: true });
  });

  it('fails at once, "too large to scan", after one stream; nothing lands', async (t) => {
    if (!clamd) return t.skip('no clamd');
    const t0 = performance.now();
    const r = spawnSync('curl', ['-sS', '--max-time', '60', '-T', join(local, 'big.bin'), `ftp://alice:alice%20password@127.0.0.1:${srv.ftpPort}/big.bin`], { encoding: 'utf8' });
    const seconds = (performance.now() - t0) / 1000;
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /550/);
    const attempts = clamd.log().match(/INSTREAM: Size limit reached/g)?.length ?? 0;
    // One stream; and one bodiless probe when clamd's close beat its reply to us (EPIPE while sending).
    assert.ok(attempts >= 1 && attempts <= 2, `clamd refused ${attempts} streams; log:\n${clamd.log().slice(-2000)}`);
    assert.ok(seconds < 10, `failed after ${seconds.toFixed(1)} s; scanTimeout is 20 s`);
    assert.deepEqual(readdirSync(srv.home('alice')), [], 'nothing under the name, no staged file left');
    const up = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/big.bin')).find((l) => l.event === 'upload' && l.path === '/big.bin');
    assert.equal(up?.result, 'failed');
    assert.match(String(up?.reason), /too large to scan/);
  });
});
