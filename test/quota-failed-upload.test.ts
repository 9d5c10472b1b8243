import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestServer } from './helpers/server.js';
import { KiB, MiB, diskUsage, persistedUsage, sftpRemote } from './helpers/quota.js';

/*
 * Issue #11, vulnerability 9: an SFTP upload whose write failed (here: over
 * the quota) was still renamed into place by the client's CLOSE, destroying
 * the file it replaced, or leaving a new name as an empty file. A failed
 * upload must leave everything as it was.
 */

const QUOTA = MiB;
const PASSWORD = 'failed upload password';
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('an upload whose write failed replaces nothing', () => {
  let srv: TestServer;
  const local = mkdtempSync(join(tmpdir(), 'sluice-v9-'));
  const big = randomBytes(2 * MiB);
  const old = randomBytes(500 * KiB);

  before(async () => {
    writeFileSync(join(local, 'big.bin'), big);
    srv = await TestServer.start({
      users: ['openssh', 'ssh2'].map((name) => ({ name, password: PASSWORD, args: ['--quota-bytes', String(QUOTA)] })),
    });
  });
  after(async () => {
    await srv.stop();
    rmSync(local, { recursive: true, force: true });
  });

  function assertUntouched(user: string, names: string[]): void {
    const home = srv.home(user);
    assert.equal(sha256(readFileSync(join(home, 'old.bin'))), sha256(old), 'the old file is whole');
    for (const name of names) assert.ok(!existsSync(join(home, name)), `${name} was not created`);
    const disk = diskUsage(home);
    assert.deepEqual(disk.temps, [], 'no temporary left');
    assert.deepEqual(persistedUsage(srv, user), { bytes: disk.bytes, files: disk.files });
  }

  it('OpenSSH sftp put: over an existing file, to a new name, and to a new name with no room for one byte', async (t) => {
    if (spawnSync('which', ['sshpass']).status !== 0) {
      if (process.env.CI === 'true') assert.fail('sshpass must be installed in CI');
      return t.skip('sshpass is not installed (.ci/run installs it)');
    }
    const r = await sftpRemote(srv, 'openssh', PASSWORD);
    const sftp = (command: string) => {
      const batch = join(local, `batch-${Math.random()}`);
      writeFileSync(batch, command + '\n');
      return spawnSync('sshpass', ['-p', PASSWORD, 'sftp', '-o', 'BatchMode=no', '-o', 'StrictHostKeyChecking=no',
        '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR', '-P', String(srv.sftpPort), '-b', batch, 'openssh@127.0.0.1'],
      { encoding: 'utf8', cwd: local, timeout: 120_000 });
    };
    try {
      await r.put('/old.bin', old);
      assert.notEqual(sftp('put big.bin old.bin').status, 0, 'put over the old file fails');
      assertUntouched('openssh', []);
      assert.notEqual(sftp('put big.bin new.bin').status, 0, 'put to a new name fails');
      assertUntouched('openssh', ['new.bin']);
      // Leave less room than one write: the very first WRITE fails.
      await r.put('/filler.bin', randomBytes(QUOTA - 500 * KiB - 100));
      assert.notEqual(sftp('put big.bin empty.bin').status, 0, 'put with no room fails');
      assertUntouched('openssh', ['empty.bin']);
    } finally {
      await r.close();
    }
  });

  it('ssh2 client: a failed WRITE then CLOSE, over an existing file and to a new name', async () => {
    const r = await sftpRemote(srv, 'ssh2', PASSWORD);
    try {
      await r.put('/old.bin', old);
      for (const target of ['/old.bin', '/new.bin']) {
        const up = await r.start(target);
        await up.write(big);
        const err = await up.finish();
        assert.match(String(err), /quota/i, 'the write was refused over the quota');
        assertUntouched('ssh2', ['new.bin']);
      }
    } finally {
      await r.close();
    }
  });
});
