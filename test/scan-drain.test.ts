import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loggedIn, startUpload } from './helpers/ftp-raw.js';
import { SlowClamd } from './helpers/clamd.js';
import { TestServer } from './helpers/server.js';

/*
 * An upload whose scan verdict is awaited when the server stops is ended by
 * the drain like any other transfer: at drainTimeout it is aborted, recorded
 * so with the drain's reason, its staged file discarded, nothing under its
 * name. Before, the only deadline on the verdict was scanTimeout: the drain
 * (and a second signal) waited for the scanner, then let the file in and
 * recorded it ok (found by a review, with a clamd that answered after 20 s).
 */

const PASSWORD = 'alice password';

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok()) {
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function upload(records: Record<string, unknown>[], path: string): Record<string, unknown> | undefined {
  const found = records.filter((r) => r.event === 'upload' && r.path === path);
  assert.ok(found.length <= 1, JSON.stringify(found));
  return found[0];
}

describe('the drain and an upload waiting for its scan verdict (a clamd that answers slowly)', () => {
  let clamd: SlowClamd;

  before(async () => {
    clamd = new SlowClamd(20_000);
    await clamd.start();
  });
  after(async () => {
    await clamd?.cleanup();
  });

  const start = (drainTimeout: number, scanTimeout: number) =>
    TestServer.start({
      yaml: `ftp:\n  tls: optional\nuploads:\n  scan: clamd\n  clamdSocket: ${clamd.socket}\n  scanTimeout: ${scanTimeout}\n`,
      users: [{ name: 'alice', password: PASSWORD }],
      env: { SLUICE_SHUTDOWN_DRAIN_TIMEOUT: String(drainTimeout) },
    });

  it('SIGTERM with drainTimeout 1: the upload is aborted with the drain reason, nothing lands, no temporary left, exit within seconds', { timeout: 60_000 }, async () => {
    const srv = await start(1, 60);
    try {
      const streamsBefore = clamd.streams;
      const control = await loggedIn(srv.ftpPort, 'alice', PASSWORD);
      const data = await startUpload(control, '/pending.bin');
      await new Promise<void>((resolve) => data.end(randomBytes(64 * 1024), () => resolve()));
      // The whole file is with the scanner: the upload now waits for its verdict (20 s away).
      await until('the scanner to have the whole file', () => clamd.streams > streamsBefore);
      const exited = new Promise<number | null>((resolve) => srv.process?.once('exit', (code) => resolve(code)));
      const t0 = performance.now();
      srv.signal('SIGTERM');
      const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 10_000))]);
      const seconds = (performance.now() - t0) / 1000;
      assert.equal(code, 0, `exit ${String(code)} after ${seconds.toFixed(1)} s (drainTimeout 1, the verdict 20 s away)\n${srv.log}${srv.stderr}`);
      assert.ok(seconds < 6, `the server took ${seconds.toFixed(1)} s to stop; drainTimeout is 1 s`);

      const record = upload(await srv.audit(0), '/pending.bin');
      assert.equal(record?.result, 'aborted', JSON.stringify(record));
      assert.equal(record?.reason, 'server shutting down: drain timeout');
      assert.deepEqual(readdirSync(srv.home('alice')), [], 'nothing under the name, no staged file left');
      const drained = srv.log.split('\n').find((l) => l.includes('"msg":"drained:'));
      assert.ok(drained, srv.log);
      const line = JSON.parse(drained) as Record<string, unknown>;
      assert.deepEqual([line.transfersFinished, line.transfersAborted], [0, 1], drained);
      control.socket.destroy();
    } finally {
      await srv.stop();
    }
  });

  it('without a stop, a verdict that comes slowly still lets the file in (226, recorded ok)', { timeout: 60_000 }, async () => {
    const quick = new SlowClamd(1500);
    await quick.start();
    const srv = await TestServer.start({
      yaml: `ftp:\n  tls: optional\nuploads:\n  scan: clamd\n  clamdSocket: ${quick.socket}\n  scanTimeout: 20\n`,
      users: [{ name: 'alice', password: PASSWORD }],
    });
    try {
      const body = randomBytes(64 * 1024);
      const control = await loggedIn(srv.ftpPort, 'alice', PASSWORD);
      const data = await startUpload(control, '/slow-ok.bin');
      await new Promise<void>((resolve) => data.end(body, () => resolve()));
      assert.equal((await control.read())?.code, 226);
      assert.equal(quick.streams, 1);
      assert.ok(readFileSync(join(srv.home('alice'), 'slow-ok.bin')).equals(body));
      const records = await srv.auditUntil((r) => r.event === 'upload' && r.path === '/slow-ok.bin');
      assert.equal(upload(records, '/slow-ok.bin')?.result, 'ok');
      control.socket.destroy();
    } finally {
      await srv.stop();
      await quick.cleanup();
    }
  });
});
