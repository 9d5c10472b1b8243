import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startServe } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';
import { KiB, MiB, diskUsage, persistedUsage, sftpRemote, waitFor, type PacedUpload } from './helpers/quota.js';

/*
 * Issue #11, vulnerability 12: a crash during uploads left their hidden
 * temporaries for ever, outside the quota. They are removed at the next
 * start, audited once per home with count and bytes, and while an upload
 * runs its temporary counts against the quota.
 */

const PASSWORD = 'crash test password';

describe('upload temporaries: counted while in flight, removed after a crash', () => {
  let srv: TestServer;
  let restarted: ReturnType<typeof startServe> | null = null;
  let outsideHome = '';

  const elsewhere = mkdtempSync(join(tmpdir(), 'sluice-elsewhere-'));

  before(async () => {
    // A home outside dataDir/homes: the sweep must find it through the user's settings.
    outsideHome = join(elsewhere, 'home');
    srv = await TestServer.start({
      users: [
        { name: 'crash', password: PASSWORD, args: ['--quota-bytes', String(4 * MiB)] },
        { name: 'outside', password: PASSWORD, args: ['--home', outsideHome] },
        { name: 'inflight', password: PASSWORD, args: ['--quota-bytes', String(MiB)] },
      ],
    });
  });
  after(async () => {
    await restarted?.stop();
    await srv.stop();
    rmSync(elsewhere, { recursive: true, force: true });
  });

  it('an upload in flight holds its bytes against the quota', async () => {
    const r = await sftpRemote(srv, 'inflight', PASSWORD);
    try {
      const held = await r.start('/held.bin');
      await held.write(randomBytes(800 * KiB));
      const second = await r.start('/second.bin');
      await second.write(randomBytes(400 * KiB));
      assert.match(String(await second.finish()), /quota/i);
      assert.equal(await held.finish(), null);
      const disk = diskUsage(srv.home('inflight'));
      assert.deepEqual(persistedUsage(srv, 'inflight'), { bytes: disk.bytes, files: disk.files });
    } finally {
      await r.close();
    }
  });

  it('SIGKILL during uploads, restart: the temporaries are gone and audited, the usage is right', async () => {
    const crash = await sftpRemote(srv, 'crash', PASSWORD);
    const outside = await sftpRemote(srv, 'outside', PASSWORD);
    await crash.put('/kept.bin', randomBytes(300 * KiB));
    await crash.put('/replaced.bin', randomBytes(100 * KiB));
    await new Promise<void>((resolve, reject) => crash.sftp.mkdir('/sub', (err) => (err ? reject(err) : resolve())));
    // Bait: a symlink out of the home to a directory holding a temporary's name. Not ours to follow.
    const bait = join(srv.dir, 'bait');
    mkdirSync(bait);
    writeFileSync(join(bait, '.sluice-upload-bait'), 'not a temporary of any home');
    symlinkSync(bait, join(srv.home('crash'), 'link-out'));

    const uploads: PacedUpload[] = [];
    for (const path of ['/a.bin', '/sub/b.bin', '/replaced.bin']) uploads.push(await crash.start(path));
    uploads.push(await outside.start('/c.bin'));
    for (const up of uploads) await up.write(randomBytes(256 * KiB));
    await waitFor('four uploads in flight', () =>
      diskUsage(srv.home('crash')).tempBytes >= 3 * 256 * KiB && diskUsage(outsideHome).tempBytes >= 256 * KiB);
    const before = { crash: diskUsage(srv.home('crash')), outside: diskUsage(outsideHome) };
    assert.equal(before.crash.temps.length, 3);
    assert.equal(before.outside.temps.length, 1);

    const died = new Promise((r) => srv.process?.once('exit', r));
    srv.signal('SIGKILL');
    await died;
    await Promise.all([crash.close(), outside.close()]);
    assert.equal(diskUsage(srv.home('crash')).temps.length, 3, 'the crash left the temporaries');

    restarted = startServe(srv.dir, {
      SLUICE_BIND: '127.0.0.1',
      SLUICE_FTP_PORT: String(srv.ftpPort),
      SLUICE_FTPS_PORT: String(srv.ftpsPort),
      SLUICE_SFTP_PORT: String(srv.sftpPort),
      SLUICE_LOG_LEVEL: 'info',
    }, /sluice started/);
    await restarted.ready;

    assert.ok(existsSync(join(bait, '.sluice-upload-bait')), 'the sweep did not follow a symlink out of the home');
    // The symlink was planted behind the server's back; the start-up recount counts it as a name.
    for (const [user, home] of [['crash', srv.home('crash')], ['outside', outsideHome]] as const) {
      const disk = diskUsage(home);
      assert.deepEqual(disk.temps, [], `${user}: temporaries removed`);
      assert.deepEqual(persistedUsage(srv, user), { bytes: disk.bytes, files: disk.files }, `${user}: usage matches the disk`);
    }
    assert.equal(diskUsage(srv.home('crash')).bytes, 400 * KiB, 'the files stay as they were');

    await new Promise((r) => setTimeout(r, 1500)); // the audit trail is flushed at least every second
    const audit = readFileSync(join(srv.dir, 'data', 'audit.log'), 'utf8').split('\n').filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === 'upload-temps-removed');
    const summary = (home: string) => audit.find((l) => l.home === home);
    assert.deepEqual(
      [summary(srv.home('crash')), summary(outsideHome)].map((l) => l && { count: l.count, bytes: l.bytes }),
      [{ count: 3, bytes: before.crash.tempBytes }, { count: 1, bytes: before.outside.tempBytes }],
    );
    assert.equal(audit.length, 2, 'one summary per home');
  });
});
