import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { KiB, diskUsage, persistedUsage } from './helpers/quota.js';
import { TestServer } from './helpers/server.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const QUOTA = 256 * KiB;

/** OpenSSH `sftp cp` (the copy-data extension): the server copies, through the same checks as a transfer. */
describe('SFTP copy-data with OpenSSH sftp cp', () => {
  const local = mkdtempSync(join(tmpdir(), 'sluice-cp-'));
  const key = join(local, 'key');
  let srv: TestServer;

  before(async () => {
    const kg = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
    assert.equal(kg.status, 0, String(kg.stderr));
    chmodSync(key, 0o600);
    srv = await TestServer.start({
      users: [
        { name: 'copier', password: 'copier password', args: ['--key', `${key}.pub`] },
        { name: 'tight', password: 'tight password', args: ['--key', `${key}.pub`, '--quota-bytes', String(QUOTA)] },
      ],
    });
    for (const [dir, perms] of [['/ro', 'list,download'], ['/drop', 'list,download,upload']] as const) {
      assert.equal(sluice(srv.dir, ['user', 'perm', 'copier', dir, perms], undefined, { SLUICE_LOG_LEVEL: 'warn' }).code, 0);
    }
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  const sftp = (user: string, commands: string[]) => {
    const batch = join(local, `batch-${Math.random()}`);
    writeFileSync(batch, commands.join('\n') + '\n');
    const opts = ['-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR'];
    return spawnSync('sftp', ['-P', String(srv.sftpPort), ...opts, '-i', key, '-b', batch, `${user}@127.0.0.1`], {
      encoding: 'utf8',
      cwd: local,
      timeout: 60_000,
    });
  };

  it('copies byte-exact on the server; the audit records the copy with its SHA-256 at both ends', async () => {
    // Several of the server's copy chunks, and not a multiple of them.
    const data = randomBytes(3 * 1024 * 1024 + 12345);
    writeFileSync(join(local, 'src.bin'), data);
    const r = sftp('copier', ['put src.bin', 'mkdir sub', 'cp src.bin sub/copy.bin']);
    assert.equal(r.status, 0, r.stderr + r.stdout);
    assert.doesNotMatch(r.stderr, /does not support/);
    const home = srv.home('copier');
    assert.equal(sha256(readFileSync(join(home, 'sub/copy.bin'))), sha256(data));
    assert.equal(sha256(readFileSync(join(home, 'src.bin'))), sha256(data), 'the source is untouched');

    const audit = await srv.auditUntilAll([
      (l) => l.event === 'upload' && l.path === '/src.bin',
      (l) => l.event === 'upload' && l.path === '/sub/copy.bin',
      (l) => l.event === 'download' && l.path === '/src.bin',
    ]);
    const upload = audit.find((l) => l.event === 'upload' && l.path === '/sub/copy.bin');
    assert.ok(upload, 'the copy is recorded as an upload of its target');
    assert.equal(upload.result, 'ok');
    assert.equal(upload.bytes, data.length);
    assert.equal(upload.sha256, sha256(data));
    assert.deepEqual(upload.copied_from, ['/src.bin']);
    const read = audit.find((l) => l.event === 'download' && l.path === '/src.bin');
    assert.ok(read, 'and as a download of its source');
    assert.equal(read.sha256, sha256(data));
    assert.deepEqual(read.copied_to, ['/sub/copy.bin']);
    // The client's own put carries no copy marker.
    const put = audit.find((l) => l.event === 'upload' && l.path === '/src.bin');
    assert.equal(put?.copied_from, undefined);
  });

  it('refuses a copy into a directory without upload, and over a file without overwrite', async () => {
    writeFileSync(join(local, 'small.txt'), 'small');
    assert.equal(sftp('copier', ['put small.txt', 'mkdir ro', 'mkdir drop']).status, 0);
    const ro = sftp('copier', ['cp small.txt ro/copy.txt']);
    assert.notEqual(ro.status, 0);
    assert.match(ro.stderr, /Permission denied/);
    assert.ok(!existsSync(join(srv.home('copier'), 'ro/copy.txt')));

    assert.equal(sftp('copier', ['cp small.txt drop/copy.txt']).status, 0, 'upload alone may create');
    writeFileSync(join(local, 'other.txt'), 'other');
    assert.equal(sftp('copier', ['put other.txt']).status, 0);
    const over = sftp('copier', ['cp other.txt drop/copy.txt']);
    assert.notEqual(over.status, 0);
    assert.match(over.stderr, /Permission denied/);
    assert.equal(readFileSync(join(srv.home('copier'), 'drop/copy.txt'), 'utf8'), 'small', 'the existing file stays');
    // The second refusal, then its session's logout: a third would be in by then.
    const records = await srv.auditWhen((all) => {
      const at = all.findIndex((l) => l.event === 'denied' && l.operation === 'upload' && l.path === '/drop/copy.txt');
      return at >= 0 && all.slice(at).some((l) => l.event === 'logout' && l.session === all[at]?.session);
    });
    const denied = records.filter((l) => l.event === 'denied' && l.operation === 'upload').map((l) => l.path);
    assert.deepEqual(denied, ['/ro/copy.txt', '/drop/copy.txt']);
  });

  it('refuses a copy over the quota and leaves no file behind', async () => {
    const data = randomBytes(QUOTA / 2 + KiB);
    writeFileSync(join(local, 'half.bin'), data);
    assert.equal(sftp('tight', ['put half.bin']).status, 0);
    const r = sftp('tight', ['cp half.bin twice.bin']);
    assert.notEqual(r.status, 0, 'the copy fails');
    assert.match(r.stderr, /Couldn't copy/);
    const home = srv.home('tight');
    assert.ok(!existsSync(join(home, 'twice.bin')));
    const disk = diskUsage(home);
    assert.deepEqual(disk.temps, [], 'no temporary left');
    assert.deepEqual({ bytes: disk.bytes, files: disk.files }, { bytes: data.length, files: 1 });
    const audit = await srv.auditUntilAll([(l) => l.event === 'quota-exceeded' && l.path === '/twice.bin', (l) => l.event === 'upload' && l.path === '/twice.bin']);
    assert.ok(audit.some((l) => l.event === 'quota-exceeded' && l.path === '/twice.bin'));
    const upload = audit.find((l) => l.event === 'upload' && l.path === '/twice.bin');
    assert.equal(upload?.result, 'failed');
    assert.deepEqual(upload?.copied_from, ['/half.bin']);
    assert.deepEqual(persistedUsage(srv, 'tight'), { bytes: data.length, files: 1 }, 'the usage counted is what is on disk');
  });
});
