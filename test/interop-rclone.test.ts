import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

/** rclone speaks TLS through Go's crypto/tls, where the other FTPS clients of the suite use OpenSSL or GnuTLS. */
const rcloneMissing = programMissing('rclone');

/**
 * Go's TLS never reads an upload's data connection and closes it with the
 * server's TLS 1.3 session ticket unread: its kernel then resets the
 * connection and drops the end of the file and its close_notify, which the
 * server answered with 426 (see DataTlsUse.tickets). 10 MiB is more than the
 * socket buffers hold when the client closes; the small files went through
 * even then.
 */
const files: Record<string, Buffer> = {
  'big.bin': randomBytes(10 << 20),
  'a.txt': Buffer.from('rclone small file\n'),
  'sub/b.bin': randomBytes(5000),
  'sub/deeper/c.bin': randomBytes(70_000),
};

describe('rclone (Go crypto/tls) over FTPS, TLS 1.3', { skip: rcloneMissing }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-rclone-'));
  const source = join(local, 'source');
  let obscured = '';
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'rita', password: 'rita password' }] });
    for (const [name, data] of Object.entries(files)) {
      const path = join(source, name);
      mkdirSync(join(path, '..'), { recursive: true });
      writeFileSync(path, data);
    }
    obscured = rclone(['obscure', 'rita password']).stdout.trim();
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  function rclone(args: string[]) {
    const r = spawnSync('rclone', ['--config', join(local, 'rclone.conf'), '--cache-dir', join(local, 'cache'), ...args], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  /**
   * One control connection (concurrency=1): rclone keeps one TLS session per
   * host for all its connections, so with several a data connection may offer
   * another control connection's session, which resumes nothing here
   * (TlsBinding), whatever the TLS version.
   */
  function remote(port: number, tls: string, dir: string): string {
    return `:ftp,host=127.0.0.1,port=${port},user=rita,pass=${obscured},${tls}=true,no_check_certificate=true,concurrency=1:${dir}`;
  }

  for (const [label, port, tls] of [
    ['explicit', () => srv.ftpPort, 'explicit_tls'],
    ['implicit', () => srv.ftpsPort, 'tls'],
  ] as const) {
    it(`${label} FTPS: rclone copy uploads a tree, 10 MiB file included, whole`, () => {
      // No retries: a retried upload would hide the failure this looks for.
      const r = rclone(['copy', '--retries', '1', '--low-level-retries', '1', source, remote(port(), tls, label)]);
      assert.equal(r.code, 0, r.stderr);
      for (const [name, data] of Object.entries(files)) {
        assert.ok(readFileSync(join(srv.home('rita'), label, name)).equals(data), name);
      }
    });
  }
});
