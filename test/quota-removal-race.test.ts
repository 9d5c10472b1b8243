import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { LedgerHandle } from '../src/session/quota.js';
import { InProcessServer } from './helpers/in-process.js';
import { diskUsage, KiB, persistedUsage } from './helpers/quota.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/**
 * A removal that another session's removal of the same file beat. Found by a
 * review: an upload's end (or a rename) that replaced a file counted it freed
 * when the file had no name left after its act, though another session's
 * REMOVE had taken that name in between, and given the bytes back already:
 * they came off the usage twice (with workers, 4 races in 120 won, and the
 * user then stored 26 MiB under a 16 MiB quota). The race is made certain
 * here: the replacing act waits at the file's in-place lock until the other
 * session's REMOVE is done.
 */
describe('a file removed by another session just before an upload or a rename replaces it', () => {
  const PASSWORD = 'race password 1';
  let srv: InProcessServer;
  const clients: ssh2.Client[] = [];
  let one: ssh2.SFTPWrapper;
  let two: ssh2.SFTPWrapper;
  const original = LedgerHandle.prototype.lockInPlace;

  before(async () => {
    srv = await InProcessServer.start();
    await srv.base.admin.add({ name: 'racer', password: PASSWORD, keys: [], quotaBytes: 4 * 1024 * KiB, quotaFiles: 100 });
    for (let i = 0; i < 2; i++) clients.push(await sshConnect({ port: srv.sftpPort, username: 'racer', password: PASSWORD }));
    [one, two] = (await Promise.all(clients.map((c) => sftpOf(c)))) as [ssh2.SFTPWrapper, ssh2.SFTPWrapper];
  });
  after(async () => {
    LedgerHandle.prototype.lockInPlace = original;
    clients.forEach((c) => c.end());
    await srv.close();
  });

  /** The next in-place lock taken waits until `meanwhile` is done; locks taken by `meanwhile` itself go through. */
  const nextLockWaitsFor = (meanwhile: () => Promise<void>) => {
    let armed = true;
    let done: Promise<void> = Promise.resolve();
    LedgerHandle.prototype.lockInPlace = async function (this: LedgerHandle, key: string) {
      if (armed) {
        armed = false;
        done = meanwhile();
        await done;
      }
      return original.call(this, key);
    };
    return () => done;
  };

  /** The next in-place lock taken, once taken, is held until `meanwhile` is done. */
  const nextLockHeldDuring = (meanwhile: () => Promise<unknown>) => {
    let armed = true;
    let done: Promise<unknown> | null = null;
    LedgerHandle.prototype.lockInPlace = async function (this: LedgerHandle, key: string) {
      await original.call(this, key);
      if (armed) {
        armed = false;
        done = meanwhile();
        await done.catch(() => undefined);
      }
    };
    return () => done;
  };

  /** The usage as stored, once the deferred writes are in, against what the home holds. */
  const usage = async () => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { stored: persistedUsage(srv, 'racer'), disk: diskUsage(join(srv.dir, 'data', 'homes', 'racer')) };
  };

  it('an upload over it: its bytes come off the usage once', async () => {
    await call((cb) => one.writeFile('/victim', randomBytes(1024 * KiB), cb));
    const handle = await call<Buffer>((cb) => one.open('/victim', 'w', cb));
    await call((cb) => one.write(handle, Buffer.alloc(1000, 1), 0, 1000, 0, cb));
    const removed = nextLockWaitsFor(() => call((cb) => two.unlink('/victim', cb)));
    await call((cb) => one.close(handle, cb));
    await removed();
    const { stored, disk } = await usage();
    assert.deepEqual([disk.bytes, disk.files], [1000, 1], 'the upload made the name again');
    assert.deepEqual(stored, { bytes: disk.bytes, files: disk.files }, 'the usage is what the home holds');
    await call((cb) => one.unlink('/victim', cb));
  });

  it('a rename over it: its bytes come off the usage once', async () => {
    await call((cb) => one.writeFile('/victim', randomBytes(1024 * KiB), cb));
    await call((cb) => one.writeFile('/small', Buffer.alloc(500, 2), cb));
    const removed = nextLockWaitsFor(() => call((cb) => two.unlink('/victim', cb)));
    // posix-rename@openssh.com: SFTP v3's RENAME refuses an existing target.
    await call((cb) => one.ext_openssh_rename('/small', '/victim', cb));
    await removed();
    const { stored, disk } = await usage();
    assert.deepEqual([disk.bytes, disk.files], [500, 1]);
    assert.deepEqual(stored, { bytes: disk.bytes, files: disk.files }, 'the usage is what the home holds');
  });

  it('a rename over an empty directory another session removes meanwhile: the name comes off the usage once', async () => {
    // Found by a review: rmdir took no lock, so one between the rename's look at the directory it replaces and
    // its act was counted by both, a name more off the usage for every such race. Made certain here: the
    // other session's RMDIR runs just before the rename(2) itself.
    await call((cb) => one.mkdir('/moving', cb));
    await call((cb) => one.mkdir('/target', cb));
    const rename = fsp.rename;
    let rmdir: Promise<unknown> | null = null;
    fsp.rename = async (from, to) => {
      if (String(to).endsWith('/target') && rmdir === null) {
        rmdir = call((cb) => two.rmdir('/target', cb)).catch((err: Error) => err);
        await rmdir;
      }
      return rename(from, to);
    };
    try {
      await call((cb) => one.ext_openssh_rename('/moving', '/target', cb));
    } finally {
      fsp.rename = rename;
    }
    assert.ok(rmdir, 'the rmdir ran in the rename');
    const { stored, disk } = await usage();
    const home = join(srv.dir, 'data', 'homes', 'racer');
    assert.deepEqual([existsSync(join(home, 'moving')), existsSync(join(home, 'target'))], [false, true], 'moved');
    assert.deepEqual(stored, { bytes: disk.bytes, files: disk.files }, 'the usage is what the home holds');
    await call((cb) => one.rmdir('/target', cb));
  });

  it('two names of one file removed at once by two sessions: neither refuses the other', async () => {
    // Found by a review of the fix above: locking every file's removal made two removals of two names of one
    // file refuse each other ("being written by another transfer"). A file of several names takes no lock.
    await call((cb) => one.writeFile('/linked', Buffer.alloc(700, 3), cb));
    const home = join(srv.dir, 'data', 'homes', 'racer');
    linkSync(join(home, 'linked'), join(home, 'second'));
    let other: Promise<unknown> | null = null;
    const during = nextLockHeldDuring(() => (other = call((cb) => two.unlink('/second', cb))));
    await call((cb) => one.unlink('/linked', cb));
    LedgerHandle.prototype.lockInPlace = original;
    await (during() ?? (other = call((cb) => two.unlink('/second', cb))));
    await other;
    assert.deepEqual([existsSync(join(home, 'linked')), existsSync(join(home, 'second'))], [false, false], 'both names removed');
  });
});
