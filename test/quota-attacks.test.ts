import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call } from './helpers/ssh.js';
import { KiB, MiB, diskUsage, ftpsRemote, persistedUsage, sftpRemote, waitFor, type PacedUpload, type Remote } from './helpers/quota.js';

/*
 * Issue #11, vulnerability 3: an overwrite was credited with the old file's
 * size as measured when the upload started. Each attack below stored well
 * over the quota on the old code. After each: what the home really holds
 * (every inode once) stays within the quota, and the usage the server
 * persisted is what is on disk.
 */

const QUOTA = MiB;
const PASSWORD = 'quota attack password';
const ATTACKS = ['rename', 'delete', 'concurrent', 'hardlink'] as const;
const PROTOCOLS = ['ftps', 'sftp'] as const;

const userOf = (protocol: string, attack: string) => `${protocol}-${attack}`;

/** Wait until `uploads` uploads are in flight in the user's home, holding `bytes` between them. */
async function landed(srv: TestServer, user: string, uploads: number, bytes: number): Promise<void> {
  await waitFor(`${uploads} upload(s) in flight`, () => {
    const disk = diskUsage(srv.home(user));
    return disk.temps.length >= uploads && disk.tempBytes >= bytes;
  });
}

describe('quota: an overwrite is accounted when its bytes land, against what they really replace', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      users: PROTOCOLS.flatMap((p) =>
        ATTACKS.map((a) => ({
          name: userOf(p, a),
          password: PASSWORD,
          args: ['--quota-bytes', String(QUOTA), ...(a === 'hardlink' ? ['--perms', 'list,download,upload,overwrite,delete,rename,mkdir,rmdir,chtimes,symlink'] : [])],
        })),
      ),
    });
  });
  after(() => srv.stop());

  const remote = (protocol: (typeof PROTOCOLS)[number], user: string): Promise<Remote> =>
    protocol === 'ftps' ? ftpsRemote(srv, user, PASSWORD) : sftpRemote(srv, user, PASSWORD);

  /** After any attack: try to fill the quota as the usage says, then compare with the disk. */
  async function assertWithinQuota(r: Remote, user: string): Promise<void> {
    // An FTP client may see its data connection fail before the server has cleaned up.
    await waitFor('the failed upload to be cleaned up', () => diskUsage(srv.home(user)).temps.length === 0);
    await r.put('/fill.bin', randomBytes(600 * KiB)).catch(() => undefined);
    const disk = diskUsage(srv.home(user));
    assert.ok(disk.bytes <= QUOTA, `${disk.bytes} bytes stored under a ${QUOTA}-byte quota`);
    assert.deepEqual(persistedUsage(srv, user), { bytes: disk.bytes, files: disk.files }, 'persisted usage matches the disk');
  }

  async function write(up: PacedUpload, total: number, chunk = 64 * KiB): Promise<void> {
    for (let sent = 0; sent < total; sent += chunk) await up.write(randomBytes(Math.min(chunk, total - sent)));
  }

  for (const protocol of PROTOCOLS) {
    describe(protocol, () => {
      it('renaming the target during the upload frees nothing', async () => {
        const user = userOf(protocol, 'rename');
        const r = await remote(protocol, user);
        try {
          await r.put('/f.bin', randomBytes(900 * KiB));
          const up = await r.start('/f.bin');
          await up.write(randomBytes(64 * KiB));
          await landed(srv, user, 1, 64 * KiB);
          await r.rename('/f.bin', '/g.bin');
          await write(up, 836 * KiB);
          assert.ok(await up.finish(), 'the upload is refused: the file it would have replaced is gone');
          await assertWithinQuota(r, user);
        } finally {
          await r.close();
        }
      });

      it('deleting the target during the upload frees nothing twice', async () => {
        const user = userOf(protocol, 'delete');
        const r = await remote(protocol, user);
        try {
          await r.put('/f.bin', randomBytes(900 * KiB));
          const up = await r.start('/f.bin');
          await up.write(randomBytes(64 * KiB));
          await landed(srv, user, 1, 64 * KiB);
          await r.remove('/f.bin');
          await write(up, 836 * KiB);
          await up.finish();
          await assertWithinQuota(r, user);
        } finally {
          await r.close();
        }
      });

      it('two concurrent overwrites of one file do not both count it as room', async () => {
        const user = userOf(protocol, 'concurrent');
        const r = await remote(protocol, user);
        try {
          await r.put('/f.bin', randomBytes(600 * KiB));
          const a = await r.start('/f.bin');
          const b = await r.start('/f.bin');
          await a.write(randomBytes(64 * KiB));
          await b.write(randomBytes(64 * KiB));
          await landed(srv, user, 2, 128 * KiB);
          await write(a, 436 * KiB);
          await write(b, 436 * KiB);
          const results = await Promise.all([a.finish(), b.finish()]);
          assert.ok(results.some((e) => e !== null), 'at most one of them fits');
          await assertWithinQuota(r, user);
        } finally {
          await r.close();
        }
      });

      it('overwriting a file that has another hard link frees nothing', async () => {
        const user = userOf(protocol, 'hardlink');
        const r = await remote(protocol, user);
        const s = await sftpRemote(srv, user, PASSWORD);
        try {
          await r.put('/f.bin', randomBytes(600 * KiB));
          await call((cb) => s.sftp.ext_openssh_hardlink('/f.bin', '/h.bin', cb));
          const up = await r.start('/f.bin');
          await write(up, 1000 * KiB);
          assert.ok(await up.finish(), 'refused: the old bytes stay under /h.bin');
          await assertWithinQuota(r, user);
        } finally {
          await s.close();
          await r.close();
        }
      });
    });
  }
});

/*
 * A file whose last name goes while a download holds it open stays on the
 * disk until the download lets go. Freed at once, a user uploaded a file,
 * opened it for reading, removed it and uploaded again, round after round:
 * one SFTP channel held 256 times the quota on the disk, off the usage.
 */
describe('quota: a file removed while a download holds it open is freed when the download lets go', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      yaml: 'ftp:\n  tls: optional\n',
      users: [
        { name: 'reader', password: PASSWORD, args: ['--quota-bytes', String(QUOTA)] },
        // Its checksums read at its download rate: one of 700 KiB holds the file open for seconds.
        { name: 'hasher', password: PASSWORD, args: ['--quota-bytes', String(QUOTA), '--rate-down', '256K'] },
      ],
    });
  });
  after(() => srv.stop());

  /** Whether a process of the server (the primary or a worker) has `name` open, read from /proc: they run as this test's user. */
  const holdsOpen = (name: string): boolean => {
    const primary = srv.pid;
    if (primary === undefined) return false;
    const parentOf = (pid: string): string | undefined => {
      try {
        return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ')[1];
      } catch {
        return undefined;
      }
    };
    const pids = [String(primary), ...readdirSync('/proc').filter((p) => /^\d+$/.test(p) && parentOf(p) === String(primary))];
    return pids.some((pid) => {
      try {
        return readdirSync(`/proc/${pid}/fd`).some((fd) => {
          try {
            return readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith(`${srv.home('hasher')}/${name}`);
          } catch {
            return false; // closed meanwhile
          }
        });
      } catch {
        return false;
      }
    });
  };

  // Found by a review: only downloads counted. A checksum (FTP HASH, SFTP check-file) reads the file as long
  // as a download, paced alike, and a file removed under it came off the usage at once while still on the disk.
  it('a checksum reading the file holds it as a download does', async () => {
    const r = await sftpRemote(srv, 'hasher', PASSWORD);
    const ftp = await RawFtp.connect(srv.ftpPort);
    try {
      await ftp.read();
      assert.equal((await ftp.login('hasher', PASSWORD)).code, 230);
      await r.put('/held.bin', randomBytes(700 * KiB));
      // Its ctime moved (by the host): the upload's receipt no longer answers HASH, which reads the file (about 3 s at 256 KiB/s).
      chmodSync(join(srv.home('hasher'), 'held.bin'), 0o640);
      const hashing = ftp.cmd('HASH held.bin');
      hashing.catch(() => undefined);
      await waitFor('the checksum to open the file', () => holdsOpen('held.bin'));
      await r.remove('/held.bin');
      await assert.rejects(r.put('/next.bin', randomBytes(700 * KiB)), /Quota exceeded/);
      // The session's end stops its checksum and closes the file: the room comes back.
      ftp.socket.destroy();
      await hashing.catch(() => undefined);
      await waitFor('the checksum to let go', () => !holdsOpen('held.bin'));
      await r.put('/next.bin', randomBytes(700 * KiB));
      await r.remove('/next.bin');
    } finally {
      ftp.socket.destroy();
      await r.close();
    }
    await waitFor('the usage to be persisted', () => persistedUsage(srv, 'hasher').bytes === 0);
  });

  for (const how of ['removed', 'uploaded over', 'renamed over'] as const) {
    it(`its last name ${how}: no room until the handle closes`, async () => {
      const r = await sftpRemote(srv, 'reader', PASSWORD);
      try {
        await r.put('/held.bin', randomBytes(700 * KiB));
        const handle = await call<Buffer>((cb) => r.sftp.open('/held.bin', 'r', cb));
        if (how === 'removed') await r.remove('/held.bin');
        else if (how === 'uploaded over') await r.put('/held.bin', Buffer.from('small'));
        else {
          await r.put('/other.bin', Buffer.from('small'));
          await call((cb) => r.sftp.ext_openssh_rename('/other.bin', '/held.bin', cb));
        }
        // The 700 KiB are on the disk still, through the handle: another 700 KiB would pass the quota.
        await assert.rejects(r.put('/next.bin', randomBytes(700 * KiB)), /Quota exceeded/);
        await call((cb) => r.sftp.close(handle, cb));
        await r.put('/next.bin', randomBytes(700 * KiB));
        await r.remove('/next.bin');
        if (how !== 'removed') await r.remove('/held.bin');
      } finally {
        await r.close();
      }
      await waitFor('the usage to be persisted', () => persistedUsage(srv, 'reader').bytes === 0);
    });
  }
});
