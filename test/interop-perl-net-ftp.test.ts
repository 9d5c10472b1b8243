import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { programMissing } from './helpers/programs.js';
import { TestServer } from './helpers/server.js';

const PL = fileURLToPath(new URL('./fixtures/net_ftp_client.pl', import.meta.url));

/** Net::FTP is Perl's own (libnet); its FTPS needs IO::Socket::SSL, an OpenSSL client that keeps a session cache. */
function netFtpMissing(): string | false {
  const perl = programMissing('perl');
  if (perl) return perl;
  if (spawnSync('perl', ['-MIO::Socket::SSL', '-e1']).status === 0) return false;
  if (process.env.CI) assert.fail('libio-socket-ssl-perl must be installed in CI (.ci/run installs it)');
  return "Perl's IO::Socket::SSL is not installed (.ci/run installs libio-socket-ssl-perl)";
}

describe("Perl's Net::FTP over FTPS", { skip: netFtpMissing() }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-net-ftp-'));
  const files = { 'a.bin': randomBytes(200_000), 'b.bin': randomBytes(1000), 'c.bin': randomBytes(50_000) };
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'perl', password: 'perl password' }] });
    for (const [name, data] of Object.entries(files)) writeFileSync(join(local, name), data);
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  // Each data connection resumes the session of the control connection's handshake. A resumption
  // under TLS 1.2 renewed its ticket (meant for TLS 1.3, where OpenSSL clients use a ticket once):
  // IO::Socket::SSL then dropped the session from its cache, never stored the renewed one, and the
  // second transfer's data connection, offering none, was refused (PHP's ftp_ssl_connect alike).
  // Under TLS 1.3 Net::FTP 3.14 still fails (README, FTP and FTPS): not tested here.
  it('TLS 1.2: three uploads and three downloads in one session, each data connection resuming', () => {
    const names = Object.keys(files);
    const r = spawnSync('perl', [PL, String(srv.ftpPort), 'perl', 'perl password', 'TLSv1_2', local, ...names], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    for (const [name, data] of Object.entries(files)) {
      assert.ok(readFileSync(join(srv.home('perl'), name)).equals(data), `${name} stored`);
      assert.ok(readFileSync(join(local, `${name}.back`)).equals(data), `${name} downloaded`);
    }
  });
});
