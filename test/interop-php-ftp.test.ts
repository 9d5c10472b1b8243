import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

/**
 * PHP's ftp extension over explicit FTPS with TLS 1.3, as PHP scripts and
 * their libraries (Flysystem's FTP adapter) upload. It resumes each TLS 1.3
 * session once (OpenSSL with a session cache), so every data connection must
 * hand it a fresh ticket: in passive mode it starts TLS after 150, and such a
 * client got none on downloads and listings, and every transfer after its
 * first was refused.
 */
const PHP = fileURLToPath(new URL('./fixtures/php_ftp_client.php', import.meta.url));
const phpMissing = programMissing('php', 'php-cli');
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe("PHP's ftp extension over FTPS (TLS 1.3)", () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-php-'));
  const data = randomBytes(300 * 1024);

  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'pia', password: 'pia password' }] });
    writeFileSync(join(srv.home('pia'), 'data.bin'), data);
    writeFileSync(join(local, 'data.bin'), data);
    chmodSync(local, 0o777);
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  for (const mode of ['pasv', 'port'] as const) {
    it(`${mode}: downloads, listings and uploads one after another on one control connection`, { skip: phpMissing, timeout: 60_000 }, async () => {
      const r = spawnSync('php', [PHP, String(srv.ftpPort), 'pia', 'pia password', mode, local], { encoding: 'utf8', timeout: 45_000 });
      assert.equal(r.status, 0, r.stderr);
      const steps = JSON.parse(r.stdout) as [string, boolean][];
      assert.deepEqual(steps.filter(([, ok]) => !ok).map(([what]) => what), [], r.stdout);
      for (let i = 0; i < 3; i++) assert.equal(sha256(readFileSync(join(local, `got${i}.bin`))), sha256(data));
      assert.equal(sha256(readFileSync(join(srv.home('pia'), 'put0.bin'))), sha256(data));
      // Each case's session ends with its logout: the second case's records come after the first's.
      const runs = mode === 'pasv' ? 1 : 2;
      const records = await srv.auditWhen((rs) => rs.filter((l) => l.event === 'logout').length >= runs);
      assert.equal(records.filter((l) => l.event === 'download' && l.path === '/data.bin' && l.result === 'ok').length, 3 * runs);
      rmSync(join(srv.home('pia'), 'put0.bin'));
    });
  }

  // Under TLS 1.3 a passive upload's client that starts TLS after 150 gets no ticket (rclone's reset), and PHP,
  // which resumes each session once, has nothing for its next transfer: ftp.tlsMaxVersion TLSv1.2 serves it.
  it('pasv, ftp.tlsMaxVersion TLSv1.2: uploads one after another, then a download', { skip: phpMissing, timeout: 60_000 }, async () => {
    const capped = await TestServer.start({ yaml: 'ftp:\n  tlsMaxVersion: TLSv1.2\n', users: [{ name: 'pia', password: 'pia password' }] });
    try {
      writeFileSync(join(capped.home('pia'), 'data.bin'), data);
      const r = spawnSync('php', [PHP, String(capped.ftpPort), 'pia', 'pia password', 'pasv-uploads', local], { encoding: 'utf8', timeout: 45_000 });
      assert.equal(r.status, 0, r.stderr);
      const steps = JSON.parse(r.stdout) as [string, boolean][];
      assert.deepEqual(steps.filter(([, ok]) => !ok).map(([what]) => what), [], r.stdout);
      for (let i = 0; i < 3; i++) assert.equal(sha256(readFileSync(join(capped.home('pia'), `put${i}.bin`))), sha256(data));
      assert.equal(sha256(readFileSync(join(local, 'back.bin'))), sha256(data));
    } finally {
      await capped.stop();
    }
  });
});
