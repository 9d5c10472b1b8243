import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { LedgerHandle } from '../src/session/quota.js';
import { InProcessServer } from './helpers/in-process.js';
import { diskUsage, persistedUsage } from './helpers/quota.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/**
 * Two whole (atomic) uploads of one name ending together, as two clients of one account
 * syncing the same file do. Found by test/stress/one-account.ts: each upload's end looked at
 * the name (the old file, or nothing), and the second's rename then replaced the first's new
 * file, which nobody had looked at: it was counted as a name more and its bytes were never
 * freed. Four SFTP uploads at a time over two names, 20 rounds, left the stored usage 19 names
 * and their bytes above the disk, until the next start's recount, and the user's uploads were
 * refused within a quota the disk was far from. The crossing is made certain here: the first
 * end to check its commit against the quota waits until the second has come to the same check,
 * so both have looked at the name before either renames.
 */
describe('two uploads of one name that end together', () => {
  const PASSWORD = 'crossing password';
  let srv: InProcessServer;
  const clients: ssh2.Client[] = [];
  let one: ssh2.SFTPWrapper;
  let two: ssh2.SFTPWrapper;
  const original = LedgerHandle.prototype.checkCommit;

  before(async () => {
    srv = await InProcessServer.start();
    await srv.base.admin.add({ name: 'syncer', password: PASSWORD, keys: [], quotaBytes: 10 * 1024 * 1024, quotaFiles: 100 });
    for (let i = 0; i < 2; i++) clients.push(await sshConnect({ port: srv.sftpPort, username: 'syncer', password: PASSWORD }));
    [one, two] = (await Promise.all(clients.map((c) => sftpOf(c)))) as [ssh2.SFTPWrapper, ssh2.SFTPWrapper];
  });
  after(async () => {
    LedgerHandle.prototype.checkCommit = original;
    clients.forEach((c) => c.end());
    await srv.close();
  });

  /** The next two commit checks meet: the first goes on only once the second has come. */
  const commitsMeet = () => {
    let first: (() => void) | null = null;
    let calls = 0;
    LedgerHandle.prototype.checkCommit = async function (this: LedgerHandle, ...args: Parameters<LedgerHandle['checkCommit']>) {
      calls++;
      if (calls === 1) await new Promise<void>((resolve) => (first = resolve));
      else if (calls === 2) first?.();
      return original.apply(this, args);
    };
  };

  /** Both sessions upload `path` whole, the ends crossing; then the stored usage against the home. */
  const crossing = async (path: string, sizes: [number, number]) => {
    const handles = await Promise.all([one, two].map((s) => call<Buffer>((cb) => s.open(path, 'w', cb))));
    await Promise.all([one, two].map((s, i) => call((cb) => s.write(handles[i] as Buffer, Buffer.alloc(sizes[i] as number, i + 1), 0, sizes[i] as number, 0, cb))));
    commitsMeet();
    try {
      await Promise.all([one, two].map((s, i) => call((cb) => s.close(handles[i] as Buffer, cb))));
    } finally {
      LedgerHandle.prototype.checkCommit = original;
    }
    // The deferred writes of the usage are in within a few hundred ms.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const disk = diskUsage(join(srv.dir, 'data', 'homes', 'syncer'));
    return { stored: persistedUsage(srv, 'syncer'), disk: { bytes: disk.bytes, files: disk.files } };
  };

  it('over a file there: the file the first put there is freed by the second', async () => {
    await call((cb) => one.writeFile('/shared', Buffer.alloc(5000), cb));
    const { stored, disk } = await crossing('/shared', [1000, 2000]);
    assert.deepEqual(stored, disk);
  });

  /*
   * The first end's look found a file, which a DELE removed before the end took its lock; the name free
   * under the lock, it went on to rename(2), and a second upload put its file there just before: replaced
   * unmeasured, a name and its bytes left on the usage. Now a name gone free is looked at again, and taken
   * without replacing (link(2)), which finds the second file and replaces it measured.
   */
  it('whose look found a file removed since: a file put there just before the commit is replaced measured', async () => {
    await call((cb) => one.writeFile('/crossed', Buffer.alloc(5000), cb));
    const handle = await call<Buffer>((cb) => one.open('/crossed', 'w', cb));
    await call((cb) => one.write(handle, Buffer.alloc(1000, 1), 0, 1000, 0, cb));
    const real = { rename: fsp.rename, link: fsp.link };
    let armed = true;
    let putMeanwhile: Promise<unknown> = Promise.resolve();
    const hook = (name: 'rename' | 'link') =>
      (async (from: string, to: string) => {
        if (armed && to.endsWith('/crossed')) {
          armed = false;
          putMeanwhile = call((cb) => two.writeFile('/crossed', Buffer.alloc(3000, 2), cb));
          await putMeanwhile;
        }
        return real[name](from, to);
      }) as typeof fsp.rename;
    // The end's look is done when it checks its commit against the quota: the file goes then.
    LedgerHandle.prototype.checkCommit = async function (this: LedgerHandle, ...args: Parameters<LedgerHandle['checkCommit']>) {
      LedgerHandle.prototype.checkCommit = original;
      await call((cb) => two.unlink('/crossed', cb));
      Object.assign(fsp, { rename: hook('rename'), link: hook('link') });
      return original.apply(this, args);
    };
    try {
      await call((cb) => one.close(handle, cb));
      await putMeanwhile;
    } finally {
      LedgerHandle.prototype.checkCommit = original;
      Object.assign(fsp, real);
    }
    assert.equal(armed, false, 'the other upload came between');
    await new Promise((resolve) => setTimeout(resolve, 300));
    const disk = diskUsage(join(srv.dir, 'data', 'homes', 'syncer'));
    assert.deepEqual(persistedUsage(srv, 'syncer'), { bytes: disk.bytes, files: disk.files });
  });

  it('on a free name: the second replaces the first, a name more only once', async () => {
    const { stored, disk } = await crossing('/fresh', [3000, 4000]);
    assert.deepEqual(stored, disk);
  });
});
