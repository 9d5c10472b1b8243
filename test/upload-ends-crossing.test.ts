import assert from 'node:assert/strict';
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

  it('on a free name: the second replaces the first, a name more only once', async () => {
    const { stored, disk } = await crossing('/fresh', [3000, 4000]);
    assert.deepEqual(stored, disk);
  });
});
