import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

/** wget speaks TLS through GnuTLS, where the other FTPS clients of the suite use OpenSSL. */
const wgetMissing = programMissing('wget');

describe('wget (GnuTLS) over FTPS', { skip: wgetMissing }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-wget-'));
  const files = { 'f1.bin': randomBytes(100_000), 'sub/deeper/f2.bin': randomBytes(300_000), 'sub/x y.txt': Buffer.from('spaced') };
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'wes', password: 'wes password' }] });
    for (const [name, data] of Object.entries(files)) {
      const path = join(srv.home('wes'), name);
      mkdirSync(join(path, '..'), { recursive: true });
      writeFileSync(path, data);
    }
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  function wget(args: string[], cwd = local) {
    const r = spawnSync('wget', ['-q', '--tries=1', '--timeout=20', '--no-check-certificate', ...args], { cwd, encoding: 'utf8', timeout: 60_000 });
    return { code: r.status, stderr: r.stderr };
  }

  // The data connection must resume the control connection's TLS session; GnuTLS keeps a TLS 1.3
  // ticket only if it is the first record after the handshake, and the implicit port's 220 came first.
  it('implicit FTPS: a download, its data connection resuming the control TLS session', () => {
    const r = wget(['--ftps-implicit', '-O', 'implicit.bin', `ftps://wes:wes%20password@127.0.0.1:${srv.ftpsPort}/f1.bin`]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(join(local, 'implicit.bin')).equals(files['f1.bin']));
  });

  it('explicit FTPS: wget -m mirrors a tree (LIST parsed, nested directories, spaces)', () => {
    const dir = join(local, 'mirror');
    mkdirSync(dir);
    const r = wget(['-m', '-nH', `ftps://wes:wes%20password@127.0.0.1:${srv.ftpPort}/`], dir);
    assert.equal(r.code, 0, r.stderr);
    for (const [name, data] of Object.entries(files)) assert.ok(readFileSync(join(dir, name)).equals(data), name);
  });
});
