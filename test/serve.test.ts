import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { after, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import { sluice, startServe } from './helpers/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-serve-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const env = { SLUICE_FTP_PORT: '0', SLUICE_FTPS_PORT: '0', SLUICE_SFTP_PORT: '0', SLUICE_BIND: '127.0.0.1' };

describe('sluice serve on a fresh machine', () => {
  it('creates data, database, certificate and host keys, prints the hint, stops on SIGTERM', async () => {
    const serve = startServe(dir, env, /No users yet/);
    await serve.ready;
    const { stdout } = serve.output();
    assert.match(stdout, /sluice user add alice/);
    assert.equal(await serve.stop(), 0);

    const mode = (p: string) => statSync(join(dir, p)).mode & 0o777;
    assert.equal(mode('data/sluice.db'), 0o600);
    assert.equal(mode('data/audit.log'), 0o600);
    assert.ok(statSync(join(dir, 'data/homes')).isDirectory());
    for (const secret of ['certs/tls-key.pem', 'certs/ssh_host_ed25519_key', 'certs/ssh_host_rsa_key']) {
      assert.equal(mode(secret), 0o600, secret);
    }
    const cert = new X509Certificate(readFileSync(join(dir, 'certs/tls-cert.pem')));
    assert.match(cert.subjectAltName ?? '', /DNS:localhost/);
    assert.match(cert.subjectAltName ?? '', /IP Address:127\.0\.0\.1/);
    assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'certs/tls-key.pem')))));
    const rsa = ssh2.utils.parseKey(readFileSync(join(dir, 'certs/ssh_host_rsa_key')));
    const ed = ssh2.utils.parseKey(readFileSync(join(dir, 'certs/ssh_host_ed25519_key')));
    assert.ok(!(rsa instanceof Error) && !(ed instanceof Error));
    assert.equal((Array.isArray(ed) ? ed[0] : ed)?.type, 'ssh-ed25519');
    const rsaKey = Array.isArray(rsa) ? rsa[0] : rsa;
    assert.equal(rsaKey?.type, 'ssh-rsa');
    // 3072-bit modulus: the public blob of ssh-rsa is 4+7 + 4+3 + 4+1+384 bytes.
    assert.equal(rsaKey?.getPublicSSH().length, 407);
  });

  it('keeps existing keys on the next start and stays quiet once a user exists', async () => {
    const before = readFileSync(join(dir, 'certs/tls-cert.pem'), 'utf8');
    const hostKey = readFileSync(join(dir, 'certs/ssh_host_ed25519_key'), 'utf8');
    assert.equal(sluice(dir, ['user', 'add', 'u1', '--generate-password'], undefined, env).code, 0);
    const serve = startServe(dir, { ...env, SLUICE_LOG_LEVEL: 'info' }, /sluice started/);
    await serve.ready;
    // Administration while the server runs must not write to the audit chain (one writer).
    assert.equal(sluice(dir, ['user', 'add', 'u2', '--generate-password'], undefined, env).code, 0);
    assert.equal(await serve.stop(), 0);
    const verify = sluice(dir, ['audit', 'verify'], undefined, env);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /chain intact/);
    assert.doesNotMatch(serve.output().stdout, /No users yet/);
    assert.equal(readFileSync(join(dir, 'certs/tls-cert.pem'), 'utf8'), before);
    assert.equal(readFileSync(join(dir, 'certs/ssh_host_ed25519_key'), 'utf8'), hostKey);
  });

  it('refuses to start, saying why, when the audit log cannot be written', () => {
    // The data directory itself named as the audit log.
    writeFileSync(join(dir, 'bad-audit.yaml'), 'audit:\n  file: .\n');
    const r = sluice(dir, ['serve'], '', { ...env, SLUICE_CONFIG: join(dir, 'bad-audit.yaml') });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /sluice: EISDIR: .*open '.*data'/);
  });

  it('never logs a password or hash', () => {
    const all = readFileSync(join(dir, 'data/audit.log'), 'utf8');
    assert.doesNotMatch(all, /argon2|password"?\s*:\s*"[^[]/);
  });
});
