import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { paramikoMissing } from './helpers/paramiko.js';
import { TestServer } from './helpers/server.js';
import { userKeyPair } from './helpers/ssh.js';

const PY = fileURLToPath(new URL('./fixtures/paramiko_client.py', import.meta.url));

/** paramiko: the SFTP client under Ansible, Fabric, Airflow and pysftp. */
describe('paramiko over SFTP', { skip: paramikoMissing() }, () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-paramiko-'));
  const key = join(local, 'id_ed25519');
  const otherKey = join(local, 'other_ed25519');
  before(async () => {
    const mine = userKeyPair();
    writeFileSync(key, mine.private, { mode: 0o600 });
    writeFileSync(`${key}.pub`, mine.public);
    writeFileSync(otherKey, userKeyPair().private, { mode: 0o600 });
    srv = await TestServer.start({
      users: [
        { name: 'pam', password: 'pam password', args: ['--perms', 'all', '--key', `${key}.pub`] },
        { name: 'rob', password: 'rob password', args: ['--perms', 'list,download'] },
        { name: 'ann', password: 'ann password' },
      ],
    });
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  function paramiko(...args: string[]): Record<string, unknown> {
    const r = spawnSync('python3', [PY, String(srv.sftpPort), ...args], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  }

  // paramiko sends a SERVICE_REQUEST before each attempt; ssh2 ended the connection at the second
  // (SERVICE_NOT_AVAILABLE), so SSHClient with a key the user lacks (an agent's, ~/.ssh's) never tried the password.
  it('logs in by key, and by password after a key the user does not have', () => {
    assert.deepEqual(paramiko('auth', 'pam', 'pam password', key, otherKey), { key: '/', other_key_then_password: '/' });
  });

  // Each such key, signed at once as paramiko signs, was a failed login, audited, delayed 1 s and scored: an
  // Ansible or Airflow host with a key of its own in ~/.ssh was banned at its fifth login by password.
  // OpenSSH's PerSourcePenalties count a connection that failed to log in, fail2ban no publickey failure.
  it('a key the user does not have, signed at once before each password login, is no failed login', async () => {
    assert.deepEqual(paramiko('logins', 'ann', 'ann password', otherKey, '6'), { logins: 6 });
    const records = await srv.auditWhen((all) => all.filter((r) => r.event === 'logout' && r.user === 'ann').length === 6);
    assert.deepEqual(
      records.filter((r) => (r.event === 'login-failed' && r.user === 'ann') || r.event === 'ban'),
      [],
    );
    assert.deepEqual(srv.bans(), []);
  });

  it('put, prefetched get, readv, check-file, pipelined and appended writes, renames, attributes, errors, exec refused', async () => {
    assert.deepEqual(paramiko('files', 'pam', 'pam password', local), {
      put: { empty: 0, small: 4096, big: 5 << 20 },
      get: true,
      readv: true,
      check: true,
      pipelined: 10_000,
      appended: 10_004,
      renamed: [0, '0o100600', 1_600_000_000],
      listdir_attr: [
        ['big', 5 << 20, '-'],
        ['piped', 10_004, '-'],
        ['renamed', 0, '-'],
      ],
      exclusive_new: 0,
      exclusive_existing: 'File exists',
      missing: 2,
      exec: [127, 'sluice: only scp, md5sum, sha1sum, sha256sum, sha384sum, sha512sum are served here'],
      after_exec: 5 << 20,
    });
    const sum = createHash('sha256').update(readFileSync(join(local, 'big'))).digest('hex');
    const records = await srv.auditUntilAll([
      (r) => r.event === 'upload' && r.path === '/big',
      (r) => r.event === 'download' && r.path === '/big' && r.offset === 0 && r.bytes === 5 << 20,
    ]);
    for (const event of ['upload', 'download']) {
      const r = records.find((x) => x.event === event && x.path === '/big' && x.bytes === 5 << 20);
      assert.deepEqual([r?.result, r?.size, r?.sha256], ['ok', 5 << 20, sum], event);
    }
  });

  it('PERMISSION_DENIED is errno 13 (EACCES)', () => {
    assert.deepEqual(paramiko('denied', 'rob', 'rob password'), { put: 13, mkdir: 13 });
  });
});
