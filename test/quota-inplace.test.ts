import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { Client as FtpClient } from 'basic-ftp';
import { FXP, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { RawFtp, startUpload } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { call, initialised, sshConnect } from './helpers/ssh.js';
import { KiB, MiB, diskUsage, persistedUsage, sftpRemote } from './helpers/quota.js';

/*
 * Quota accounting of writes that race their own end or another writer of
 * the same file. Each stored far over the quota (or counted double) before:
 * a CLOSE pipelined behind a WRITE measured the file before the WRITE landed;
 * a truncation while an in-place upload was open was credited, and the
 * upload's writes up to its old size were not charged again; a new file
 * written in place and renamed away was "given back" by unlinking its old
 * name, which no longer existed, so it stayed whole and uncounted.
 */

const QUOTA = MiB;
const PASSWORD = 'in place quota password';
const USERS = ['pipelined', 'truncated', 'appends', 'renamed', 'resizer', 'remover', 'replacer', 'overwriter', 'emptywrite'];

describe('quota: writes racing their end or another writer of the same file', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      users: [
        ...USERS.map((name) => ({ name, password: PASSWORD, args: ['--quota-bytes', String(QUOTA)] })),
        // No quota: its usage is counted all the same, for a quota set later.
        { name: 'farsize', password: PASSWORD },
      ],
    });
  });
  after(() => srv.stop());

  function assertAccounted(user: string): void {
    const disk = diskUsage(srv.home(user));
    assert.ok(disk.bytes <= QUOTA, `${disk.bytes} bytes stored under a ${QUOTA}-byte quota`);
    assert.deepEqual(persistedUsage(srv, user), { bytes: disk.bytes, files: disk.files }, 'persisted usage matches the disk');
  }

  it('SFTP: a SETSTAT size the file system refuses charges nothing (it once charged 8 PiB)', async () => {
    const r = await sftpRemote(srv, 'farsize', PASSWORD);
    try {
      await call((cb) => r.sftp.writeFile('/small', 'hello', cb));
      // Past any file system's largest file: ftruncate refuses it and the file keeps its 5 bytes.
      await assert.rejects(call((cb) => r.sftp.setstat('/small', { size: 2 ** 53 - 1 }, cb)));
      await call((cb) => r.sftp.setstat('/small', { size: 100 }, cb));
    } finally {
      await r.close();
    }
    const disk = diskUsage(srv.home('farsize'));
    assert.equal(disk.bytes, 100);
    assert.deepEqual(persistedUsage(srv, 'farsize'), { bytes: disk.bytes, files: disk.files });
  });

  /*
   * An empty WRITE lands no byte wherever it points. It reserved the room up
   * to its offset all the same (and moved the upload's idea of the file's
   * size there) until its handle closed: the user's other uploads, which fit
   * the room really left, were refused 'Quota exceeded' (found by a review).
   */
  it('SFTP: an empty WRITE far past the end of a file written in place reserves nothing', async () => {
    const r = await sftpRemote(srv, 'emptywrite', PASSWORD);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'emptywrite', password: PASSWORD });
    try {
      await r.put('/fill', randomBytes(600 * KiB));
      await r.put('/w', Buffer.from('abc'));
      // Raw packets: ssh2's client will not send a WRITE of no bytes.
      const { ch, next } = await initialised(conn);
      ch.write(new Writer(FXP.OPEN, 1).string('/w').uint32(OPEN_FLAGS.WRITE).uint32(0).finish());
      const opened = await next();
      assert.equal(opened[0], FXP.HANDLE);
      const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
      // 300 KiB past the end: within the room left (424 KiB), so it was taken, leaving 124 KiB.
      ch.write(new Writer(FXP.WRITE, 2).bytes(handle).uint64(300 * KiB).bytes(Buffer.alloc(0)).finish());
      const written = await next();
      assert.equal(written[0], FXP.STATUS);
      assert.equal(written.readUInt32BE(5), STATUS.OK);
      // Another upload that fits the room really left, while the handle is still open.
      await r.put('/second', randomBytes(200 * KiB));
      ch.write(new Writer(FXP.CLOSE, 3).bytes(handle).finish());
      const closed = await next();
      assert.equal(closed.readUInt32BE(5), STATUS.OK);
      assert.equal(diskUsage(srv.home('emptywrite')).bytes, 600 * KiB + 3 + 200 * KiB, 'the empty WRITE grew nothing');
      assertAccounted('emptywrite');
    } finally {
      conn.end();
      await r.close();
    }
  });

  it('SFTP: a CLOSE sent right behind a WRITE charges the bytes that WRITE lands', async () => {
    const r = await sftpRemote(srv, 'pipelined', PASSWORD);
    try {
      const data = randomBytes(200 * KiB);
      for (let i = 0; i < 10; i++) {
        const handle = await call<Buffer>((cb) => r.sftp.open(`/f${i}`, 'w', cb));
        // Both requests leave at once, as a pipelining client sends them.
        await Promise.all([
          call((cb) => r.sftp.write(handle, data, 0, data.length, 0, cb)).catch(() => undefined),
          call((cb) => r.sftp.close(handle, cb)).catch(() => undefined),
        ]);
      }
      assertAccounted('pipelined');
    } finally {
      await r.close();
    }
  });

  it('SFTP: an FSETSTAT size refused for the quota ends the upload; its writes are not taken uncharged', async () => {
    const r = await sftpRemote(srv, 'resizer', PASSWORD);
    try {
      await r.put('/f', randomBytes(1));
      const handle = await call<Buffer>((cb) => r.sftp.open('/f', 'r+', cb));
      await assert.rejects(call((cb) => r.sftp.fsetstat(handle, { size: 8 * MiB }, cb)), /quota/i);
      const data = randomBytes(64 * KiB);
      for (let at = 0; at < 8 * MiB; at += data.length) {
        await call((cb) => r.sftp.write(handle, data, 0, data.length, at, cb)).catch(() => undefined);
      }
      await call((cb) => r.sftp.close(handle, cb)).catch(() => undefined);
      assertAccounted('resizer');
    } finally {
      await r.close();
    }
  });

  it('SFTP: a file open for writing in place cannot be truncated under it', async () => {
    const r = await sftpRemote(srv, 'truncated', PASSWORD);
    try {
      const size = 900 * KiB;
      for (let i = 0; i < 3; i++) {
        const name = `/t${i}`;
        await r.put(name, randomBytes(size)).catch(() => undefined);
        const handle = await call<Buffer>((cb) => r.sftp.open(name, 'r+', cb)).catch(() => null);
        if (handle === null) continue;
        await call((cb) => r.sftp.setstat(name, { size: 0 }, cb)).catch(() => undefined);
        const second = await call<Buffer>((cb) => r.sftp.open(name, 'r+', cb)).catch(() => null);
        if (second) {
          await call((cb) => r.sftp.fsetstat(second, { size: 0 }, cb)).catch(() => undefined);
          await call((cb) => r.sftp.close(second, cb)).catch(() => undefined);
        }
        const data = randomBytes(size);
        for (let at = 0; at < size; at += 32 * KiB) {
          await call((cb) => r.sftp.write(handle, data, at, Math.min(32 * KiB, size - at), at, cb)).catch(() => undefined);
        }
        await call((cb) => r.sftp.close(handle, cb)).catch(() => undefined);
      }
      assertAccounted('truncated');
    } finally {
      await r.close();
    }
  });

  it('SFTP: a new file renamed while written in place, then over quota, is given back all the same', async () => {
    const r = await sftpRemote(srv, 'renamed', PASSWORD);
    try {
      const data = randomBytes(900 * KiB);
      for (let i = 0; i < 3; i++) {
        // 'a': CREAT|WRITE|APPEND without TRUNC, so the upload writes the new file where it lies.
        const handle = await call<Buffer>((cb) => r.sftp.open('/new', 'a', cb));
        await call((cb) => r.sftp.write(handle, data, 0, data.length, 0, cb)).catch(() => undefined);
        await call((cb) => r.sftp.rename('/new', `/kept${i}`, cb)).catch(() => undefined);
        await call((cb) => r.sftp.write(handle, data, 0, data.length, 0, cb)).catch(() => undefined);
        await call((cb) => r.sftp.close(handle, cb)).catch(() => undefined);
      }
      assertAccounted('renamed');
    } finally {
      await r.close();
    }
  });

  /*
   * An in-place upload's growth is only reserved until it ends. Removing (or
   * renaming over) its file meanwhile gave back the file's whole size, that
   * growth included; a WRITE at a far offset then ended the upload over the
   * quota, which cut the file back and charged nothing: the growth was given
   * back without ever being charged, and each round took that much off the
   * usage while the files stayed (1.2 MiB stored under 1 MiB, usage 0).
   * An upload put over it gave back the same. Now none of them may take the
   * file while it is written in place.
   */
  for (const [user, drop] of [
    ['remover', (r: Awaited<ReturnType<typeof sftpRemote>>) => r.remove('/w')],
    ['replacer', (r: Awaited<ReturnType<typeof sftpRemote>>) => call((cb) => r.sftp.ext_openssh_rename('/decoy', '/w', cb))],
    ['overwriter', (r: Awaited<ReturnType<typeof sftpRemote>>) => r.put('/w', Buffer.alloc(0))],
  ] as const) {
    it(`SFTP: a file written in place, then ${user}'s step on its name, gives back no byte it was never charged`, async () => {
      const r = await sftpRemote(srv, user, PASSWORD);
      try {
        for (let i = 0; i < 3; i++) {
          await r.put(`/kept${i}`, randomBytes(400 * KiB)).catch(() => undefined);
          if (user === 'replacer') await r.put('/decoy', Buffer.alloc(0)).catch(() => undefined);
          // WRITE|CREAT without TRUNC or APPEND: a new file written where it lies, charged at its end.
          const handle = await call<Buffer>((cb) => r.sftp.open('/w', 0x0a, cb));
          const data = randomBytes(400 * KiB);
          await call((cb) => r.sftp.write(handle, data, 0, data.length, 0, cb)).catch(() => undefined);
          await drop(r).catch(() => undefined);
          // Far past the quota: refused, and the upload ends over quota.
          await call((cb) => r.sftp.write(handle, data, 0, 1, 2 ** 40, cb)).catch(() => undefined);
          await call((cb) => r.sftp.close(handle, cb)).catch(() => undefined);
        }
        for (let i = 3; i < 6; i++) await r.put(`/more${i}`, randomBytes(400 * KiB)).catch(() => undefined);
        assertAccounted(user);
      } finally {
        await r.close();
      }
    });
  }

  it('FTPS: two APPEs to one file at once are not both charged with the other\'s bytes', async () => {
    const connect = async () => {
      const c = new FtpClient(30_000);
      await c.access({ host: '127.0.0.1', port: srv.ftpPort, user: 'appends', password: PASSWORD, secure: true, secureOptions: { rejectUnauthorized: false } });
      return c;
    };
    const [a, b] = [await connect(), await connect()];
    try {
      await a.uploadFrom(Readable.from([randomBytes(KiB)]), '/log');
      const results = await Promise.allSettled([
        a.appendFrom(Readable.from([randomBytes(200 * KiB)]), '/log'),
        b.appendFrom(Readable.from([randomBytes(200 * KiB)]), '/log'),
      ]);
      assert.ok(results.some((x) => x.status === 'fulfilled'), 'one of the appends goes through');
      assertAccounted('appends');
    } finally {
      a.close();
      b.close();
    }
  });
});

/*
 * Found by a review: the in-place lock was each user's, and two users may share a home. Two APPEs of one
 * file by two such users ran at once, their bytes interleaved in the file (each audit record telling of
 * bytes in a row the file did not hold); a whole upload by one replaced the file under the other's APPE,
 * whose 226 then told of bytes no name held.
 */
describe('two users sharing a home: one writer in place of a file at a time', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      users: [
        { name: 'owner', password: PASSWORD },
        { name: 'sharer', password: PASSWORD, args: ['--home', 'data/homes/owner'] },
      ],
    });
  });
  after(() => srv.stop());

  for (const second of ['APPE', 'STOR'] as const) {
    it(`an APPE under way, the other user's ${second} of the file is refused, and the file is the APPE's whole`, async () => {
      const name = `log-${second}`;
      const start = Buffer.alloc(1000, 'x');
      writeFileSync(join(srv.home('owner'), name), start);
      const [a, b] = [await RawFtp.secureLogin(srv.ftpPort, 'owner', PASSWORD), await RawFtp.secureLogin(srv.ftpPort, 'sharer', PASSWORD)];
      try {
        const [mine, theirs] = [randomBytes(300 * KiB), randomBytes(20 * KiB)];
        const appending = await startUpload(a, name, true, 'APPE');
        await new Promise<void>((resolve) => appending.write(mine.subarray(0, 100 * KiB), () => resolve()));
        await new Promise((resolve) => setTimeout(resolve, 200));
        const other = await startUpload(b, name, true, second).then(
          async (data) => {
            data.end(theirs);
            return (await b.read())?.code;
          },
          // Refused before the client's data connection reached the port, the port is closed already: the
          // connect fails (a clean CI run saw ECONNREFUSED), and the refusal waits on the control connection.
          async (err: Error) => (/451/.test(err.message) ? err.message : `${err.message}; then ${(await b.read())?.code ?? 'closed'}`),
        );
        assert.match(String(other), /451/, `the other user's ${second}`);
        appending.end(mine.subarray(100 * KiB));
        assert.equal((await a.read())?.code, 226);
        assert.ok(readFileSync(join(srv.home('owner'), name)).equals(Buffer.concat([start, mine])), 'the file is the first bytes and the whole APPE');
      } finally {
        a.close();
        b.close();
      }
    });
  }
});
