import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { LedgerHandle } from '../src/session/quota.js';
import { sftpWithEveryRight } from './helpers/in-process.js';
import { call } from './helpers/ssh.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
/** Large enough for the server to keep an upload's hash (its receipt). */
const BIG = 1024 * 1024 + 3;

/**
 * Found while carrying receipts across renames: an act that replaces or removes a file (an upload's
 * end over it, a rename over it, a delete) took the file's receipt for its look at the name, but
 * compared the file's size and mtime only between its two looks under the file's lock, just before
 * and just after the act. A write in place between the first look and the lock (another program,
 * another node; a sluice upload in place that ends just then) changed the bytes unseen, and the record
 * claimed the upload's sha256 for bytes the file no longer held. Made certain here: the write comes
 * as the act takes the file's lock.
 */
describe('a file written in place between the look and the lock: no sha256 claimed for what was replaced or removed', () => {
  let world: Awaited<ReturnType<typeof sftpWithEveryRight>>;
  let sftp: ssh2.SFTPWrapper;
  const realLockNames = LedgerHandle.prototype.lockNames;
  before(async () => {
    world = await sftpWithEveryRight('win');
    sftp = world.sftp;
  });
  after(async () => {
    LedgerHandle.prototype.lockNames = realLockNames;
    await world.close();
  });

  const put = async (path: string, data: Buffer) => {
    const h = await call<Buffer>((cb) => sftp.open(path, 'w', cb));
    for (let off = 0; off < data.length; off += 32 * 1024) {
      await call((cb) => sftp.write(h, data, off, Math.min(32 * 1024, data.length - off), off, cb));
    }
    await call((cb) => sftp.close(h, cb));
  };

  /** The next lock of `name`'s node's names: the file's first bytes are written over first, in place, by another program. */
  const writtenAsLocked = (name: string) => {
    const file = join(world.home, name);
    const { dev, ino } = statSync(file);
    let armed = true;
    LedgerHandle.prototype.lockNames = function (this: LedgerHandle, key, among) {
      if (armed && key === `${dev}:${ino}`) {
        armed = false;
        const fd = openSync(file, 'r+');
        writeSync(fd, Buffer.from('written over'), 0, 12, 0);
        closeSync(fd);
      }
      return realLockNames.call(this, key, among);
    };
    return () => {
      LedgerHandle.prototype.lockNames = realLockNames;
      assert.equal(armed, false, 'the lock was taken');
    };
  };

  const recordOf = async (event: string, key: string, value: string): Promise<Record<string, unknown> | undefined> => {
    await world.srv.coordination.auditLog?.flush();
    const lines = readFileSync(join(world.srv.base.config.dataDir, 'audit.log'), 'utf8').split('\n').filter(Boolean);
    return lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === event && l[key] === value).at(-1);
  };

  /** Each act, and where its record says what it replaced or removed. */
  const acts = {
    'an upload over it': { name: 'upload.bin', event: 'upload', key: 'path', field: 'replaced' },
    'a rename over it': { name: 'rename.bin', event: 'rename', key: 'to', field: 'replaced' },
    'a delete': { name: 'delete.bin', event: 'delete', key: 'path', field: 'removed' },
  } as const;
  for (const [act, { name, event, key, field }] of Object.entries(acts)) {
    it(act, async () => {
      const first = randomBytes(BIG);
      await put(`/${name}`, first);
      const written = writtenAsLocked(name);
      try {
        if (act === 'an upload over it') await put(`/${name}`, Buffer.from('new'));
        if (act === 'a rename over it') {
          await put('/other.bin', Buffer.from('other'));
          await call((cb) => sftp.ext_openssh_rename('/other.bin', `/${name}`, cb));
        }
        if (act === 'a delete') await call((cb) => sftp.unlink(`/${name}`, cb));
      } finally {
        written();
      }
      const gone = (await recordOf(event, key, `/${name}`))?.[field] as Record<string, unknown> | undefined;
      assert.notEqual(gone?.sha256, sha256(first), "the upload's hash, claimed for bytes the file no longer held");
      assert.deepEqual(gone, { size: BIG });
    });
  }
});
