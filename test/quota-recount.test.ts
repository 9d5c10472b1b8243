import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { KiB, diskUsage, persistedUsage, sftpRemote, waitFor } from './helpers/quota.js';
import { call, sshConnect } from './helpers/ssh.js';

/*
 * Issue #11: the stored quota usage could drift from the disk, after a crash
 * during an in-place upload (its growth is recorded when it settles) and for
 * homes whose usage older versions counted without directories and symlinks.
 * At start the sweep recounts every home, stores what the disk holds where it
 * differs, and audits each correction once.
 */

const PASSWORD = 'recount test password';

describe('usage recounted from the disk at start', () => {
  let srv: TestServer;

  before(async () => {
    srv = await TestServer.start({
      users: [
        { name: 'grower', password: PASSWORD },
        { name: 'legacy', password: PASSWORD },
      ],
    });
  });
  after(async () => {
    await srv.stop();
  });

  const recounted = (records: Record<string, unknown>[], user: string) => records.filter((l) => l.event === 'usage-recounted' && l.user === user);
  const isRecount = (user: string) => (l: Record<string, unknown>) => l.event === 'usage-recounted' && l.user === user;

  for (const flags of ['r+', 'a'] as const) {
    it(`SIGKILL while an SFTP '${flags}' handle has grown a file: the growth is counted at restart`, async () => {
      const path = `/grow-${flags}.bin`;
      const r = await sftpRemote(srv, 'grower', PASSWORD);
      await r.put(path, randomBytes(100 * KiB));
      const before = persistedUsage(srv, 'grower');
      const handle = await call<Buffer>((cb) => r.sftp.open(path, flags, cb));
      const chunk = 32 * KiB;
      const growth = randomBytes(400 * KiB);
      for (let at = 0; at < growth.length; at += chunk) {
        const length = Math.min(chunk, growth.length - at);
        await call((cb) => r.sftp.write(handle, growth, at, length, 100 * KiB + at, cb));
      }
      const onDisk = join(srv.home('grower'), path);
      await waitFor('the growth on disk', () => statSync(onDisk).size === 500 * KiB);
      assert.deepEqual(persistedUsage(srv, 'grower'), before, 'growth in flight is not yet stored');

      await srv.kill();
      await r.close();
      await srv.restart();

      const disk = diskUsage(srv.home('grower'));
      assert.deepEqual(persistedUsage(srv, 'grower'), { bytes: disk.bytes, files: disk.files });
      assert.equal(disk.bytes, before.bytes + 400 * KiB);
      const records = recounted(await srv.auditUntil((l) => isRecount('grower')(l) && l.bytes === disk.bytes), 'grower').filter((l) => l.bytes === disk.bytes);
      assert.equal(records.length, 1, 'one usage-recounted record');
      assert.deepEqual(
        { oldBytes: records[0]!.oldBytes, oldFiles: records[0]!.oldFiles, files: records[0]!.files },
        { oldBytes: before.bytes, oldFiles: before.files, files: disk.files },
      );
    });
  }

  it('a home whose stored usage lacks directories, symlinks and links is corrected at start, for each user of it', async () => {
    const r = await sftpRemote(srv, 'legacy', PASSWORD);
    await r.put('/kept.bin', randomBytes(64 * KiB));
    await r.close();
    const stored = persistedUsage(srv, 'legacy');
    assert.deepEqual(stored, { bytes: 64 * KiB, files: 1 });

    const home = srv.home('legacy');
    // A second user of the same home: each is charged for all of it.
    const added = sluice(srv.dir, ['user', 'add', 'sharer', '--password-stdin', '--home', home], `${PASSWORD}\n`);
    assert.equal(added.code, 0, added.stderr);
    await srv.restart(() => {
      // What a home written under an older version holds beyond its stored count.
      mkdirSync(join(home, 'docs', 'deep'), { recursive: true });
      writeFileSync(join(home, 'docs', 'deep', 'note.txt'), randomBytes(10 * KiB));
      linkSync(join(home, 'docs', 'deep', 'note.txt'), join(home, 'note-link.txt')); // its bytes count once
      symlinkSync('kept.bin', join(home, 'alias'));
    });

    const disk = diskUsage(home);
    assert.deepEqual(disk, { bytes: 74 * KiB, files: 6, temps: [], tempBytes: 0 });
    assert.deepEqual(persistedUsage(srv, 'legacy'), { bytes: disk.bytes, files: disk.files });
    assert.deepEqual(persistedUsage(srv, 'sharer'), { bytes: disk.bytes, files: disk.files });
    // The start's sweep records both users' recounts together.
    const trail = await srv.auditUntilAll([isRecount('sharer'), isRecount('legacy')]);
    assert.equal(recounted(trail, 'sharer').length, 1, 'one usage-recounted record for the other user');
    const records = recounted(trail, 'legacy');
    assert.equal(records.length, 1, 'one usage-recounted record');
    assert.deepEqual(
      { oldBytes: records[0]!.oldBytes, oldFiles: records[0]!.oldFiles, bytes: records[0]!.bytes, files: records[0]!.files },
      { oldBytes: stored.bytes, oldFiles: stored.files, bytes: disk.bytes, files: disk.files },
    );

    // A start with nothing to correct records nothing.
    await srv.restart();
    // The sweep is done before the server serves: a failed login, made now, is recorded after anything it recorded.
    await assert.rejects(sshConnect({ port: srv.sftpPort, username: 'legacy', password: 'not the password' }));
    const after = await srv.auditUntil((l) => l.event === 'login-failed' && l.user === 'legacy');
    assert.equal(recounted(after, 'legacy').length, 1);
    assert.equal(recounted(after, 'sharer').length, 1);
  });
});
