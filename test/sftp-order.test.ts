import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FXP, MAX_READ, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

describe('SFTP request order', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'ola', password: 'ola password', args: ['--perms', 'all'] }] });
  });
  after(() => srv.stop());

  it('hashes a download whose READs complete out of order while other READs reuse the reply buffers', async () => {
    const chunks = 6;
    const first = randomBytes(chunks * MAX_READ);
    const other = randomBytes(chunks * MAX_READ);
    writeFileSync(join(srv.home('ola'), 'first.bin'), first);
    writeFileSync(join(srv.home('ola'), 'other.bin'), other);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'ola', password: 'ola password' });
    try {
      const { ch, next } = await initialised(conn);
      const open = async (id: number, path: string) => {
        ch.write(new Writer(FXP.OPEN, id).string(path).uint32(OPEN_FLAGS.READ).uint32(0).finish());
        const reply = await next();
        assert.equal(reply[0], FXP.HANDLE);
        return reply.subarray(9, 9 + reply.readUInt32BE(5));
      };
      const a = await open(1, '/first.bin');
      const b = await open(2, '/other.bin');
      const read = async (handle: Buffer, from: number, to: number, id: number) => {
        for (let i = from; i < to; i++) ch.write(new Writer(FXP.READ, id + i).bytes(handle).uint64(i * MAX_READ).uint32(MAX_READ).finish());
        for (let i = from; i < to; i++) {
          const reply = await next();
          assert.equal(reply[0], FXP.DATA);
          const at = reply.readUInt32BE(1) - id;
          const file = handle === a ? first : other;
          assert.deepEqual(reply.subarray(9), file.subarray(at * MAX_READ, (at + 1) * MAX_READ));
        }
      };
      /** `length` bytes of the first file at `position`, alone. */
      const readFirst = async (id: number, position: number, length: number) => {
        ch.write(new Writer(FXP.READ, id).bytes(a).uint64(position).uint32(length).finish());
        assert.deepEqual((await next()).subarray(9), first.subarray(position, position + length));
      };
      // Its first byte, then all but the rest of its first chunk: the audit's hash waits for that, holding the rest.
      // (The first READ says where a download begins: one that began at the second chunk would be hashed from there.)
      await readFirst(99, 0, 1);
      await read(a, 1, chunks, 100);
      // Meanwhile the replies' buffers serve the other file.
      await read(b, 0, chunks, 200);
      await readFirst(300, 1, MAX_READ - 1);
      for (const [id, handle] of [[3, a], [4, b]] as const) {
        ch.write(new Writer(FXP.CLOSE, id).bytes(handle).finish());
        assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      }
    } finally {
      conn.end();
    }
    const rec = (await srv.auditUntil((l) => l.event === 'download' && l.path === '/first.bin')).findLast((l) => l.event === 'download' && l.path === '/first.bin');
    assert.equal(rec?.result, 'ok');
    assert.equal(rec?.sha256, createHash('sha256').update(first).digest('hex'));
  });

  it('records a download closed right behind its READs with every byte the READs sent', async () => {
    const data = randomBytes(MAX_READ + 1000);
    writeFileSync(join(srv.home('ola'), 'closed-behind.bin'), data);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'ola', password: 'ola password' });
    try {
      const { ch, next } = await initialised(conn);
      ch.write(new Writer(FXP.OPEN, 1).string('/closed-behind.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
      const opened = await next();
      assert.equal(opened[0], FXP.HANDLE);
      const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
      // READs run at once, CLOSE beside them: the client may get the file while the record says it got nothing.
      ch.write(
        Buffer.concat([
          new Writer(FXP.READ, 2).bytes(handle).uint64(0).uint32(MAX_READ).finish(),
          new Writer(FXP.READ, 3).bytes(handle).uint64(MAX_READ).uint32(MAX_READ).finish(),
          new Writer(FXP.CLOSE, 4).bytes(handle).finish(),
        ]),
      );
      const got: Buffer[] = [];
      for (let i = 0; i < 3; i++) {
        const reply = await next();
        if (reply[0] === FXP.DATA) got[reply.readUInt32BE(1) - 2] = reply.subarray(9);
        else assert.equal(reply.readUInt32BE(5), STATUS.OK, `request ${reply.readUInt32BE(1)}`);
      }
      const sent = Buffer.concat(got.filter((b) => b !== undefined));
      const rec = (await srv.auditUntil((l) => l.event === 'download' && l.path === '/closed-behind.bin')).findLast(
        (l) => l.event === 'download' && l.path === '/closed-behind.bin',
      );
      assert.equal(rec?.bytes, sent.length, 'the record counts the bytes the READs sent');
      assert.equal(rec?.sha256, createHash('sha256').update(sent).digest('hex'));
    } finally {
      conn.end();
    }
  });

  it('holds the out-of-order bytes of all downloads within one budget: past it, a download gives up its hash', async () => {
    const chunks = 52; // 13 MiB: each download holds 12.75 MiB while its first chunk waits, under its own 16 MiB
    const data = randomBytes(chunks * MAX_READ);
    writeFileSync(join(srv.home('ola'), 'waiting.bin'), data);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'ola', password: 'ola password' });
    const handles: Buffer[] = [];
    try {
      const { ch, next } = await initialised(conn);
      let id = 1;
      for (let h = 0; h < 3; h++) {
        ch.write(new Writer(FXP.OPEN, ++id).string('/waiting.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
        const opened = await next();
        assert.equal(opened[0], FXP.HANDLE);
        const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
        handles.push(handle);
        // The first byte (the first READ says where a download begins), then all but the rest of the first chunk:
        // the hash holds them until it comes. Three such downloads held 38 MiB (256 of them 4 GiB).
        ch.write(new Writer(FXP.READ, ++id).bytes(handle).uint64(0).uint32(1).finish());
        assert.equal((await next())[0], FXP.DATA);
        for (let k = 1; k < chunks; k += 16) {
          const n = Math.min(16, chunks - k);
          for (let j = 0; j < n; j++) ch.write(new Writer(FXP.READ, ++id).bytes(handle).uint64((k + j) * MAX_READ).uint32(MAX_READ).finish());
          for (let j = 0; j < n; j++) assert.equal((await next())[0], FXP.DATA);
        }
      }
      for (const handle of handles) {
        ch.write(new Writer(FXP.READ, ++id).bytes(handle).uint64(1).uint32(MAX_READ - 1).finish());
        assert.equal((await next())[0], FXP.DATA);
        ch.write(new Writer(FXP.CLOSE, ++id).bytes(handle).finish());
        assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      }
    } finally {
      conn.end();
    }
    const isIt = (l: Record<string, unknown>) => l.event === 'download' && l.path === '/waiting.bin';
    let records: Record<string, unknown>[] = [];
    for (const end = Date.now() + 10_000; records.length < 3 && Date.now() < end; ) records = (await srv.audit(200)).filter(isIt);
    assert.equal(records.length, 3);
    const whole = createHash('sha256').update(data).digest('hex');
    assert.deepEqual(records.map((r) => r.sha256), [whole, whole, null], 'the third did not fit: its hash is given up, not held');
  });

  it('lands pipelined APPEND writes in the order sent (OpenSSH reput)', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'ola', password: 'ola password' });
    try {
      const { ch, next } = await initialised(conn);
      const flags = OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.APPEND;
      ch.write(new Writer(FXP.OPEN, 1).string('/appended.bin').uint32(flags).uint32(0).finish());
      const opened = await next();
      assert.equal(opened[0], FXP.HANDLE);
      const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
      // Writes pipelined as fast as the server takes them, each a different byte: any swap shows in the file.
      const count = 250;
      const size = 16 * 1024;
      const burst: Buffer[] = [];
      for (let i = 0; i < count; i++) {
        burst.push(new Writer(FXP.WRITE, 10 + i).bytes(handle).uint64(i * size).bytes(Buffer.alloc(size, i)).finish());
      }
      ch.write(Buffer.concat(burst));
      for (let i = 0; i < count; i++) {
        const reply = await next();
        assert.equal(reply[0], FXP.STATUS);
        assert.equal(reply.readUInt32BE(5), STATUS.OK);
      }
      ch.write(new Writer(FXP.CLOSE, 2).bytes(handle).finish());
      assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      const file = readFileSync(join(srv.home('ola'), 'appended.bin'));
      assert.equal(file.length, count * size);
      const order = Array.from({ length: count }, (_, i) => file[i * size]);
      assert.deepEqual(order, Array.from({ length: count }, (_, i) => i));
    } finally {
      conn.end();
    }
  });

  it('keeps copy-data in line with the WRITEs through its target handle', async () => {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'ola', password: 'ola password' });
    try {
      const { ch, next } = await initialised(conn);
      const open = async (id: number, path: string, flags: number) => {
        ch.write(new Writer(FXP.OPEN, id).string(path).uint32(flags).uint32(0).finish());
        const reply = await next();
        assert.equal(reply[0], FXP.HANDLE);
        return reply.subarray(9, 9 + reply.readUInt32BE(5));
      };
      const size = 64 * 1024;
      const seeding = await open(1, '/source.bin', OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT);
      ch.write(new Writer(FXP.WRITE, 3).bytes(seeding).uint64(0).bytes(Buffer.alloc(size, 0xcc)).finish());
      assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      // A new name is staged until its CLOSE, TRUNC or not: only then is there a file to read.
      ch.write(new Writer(FXP.CLOSE, 2).bytes(seeding).finish());
      assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      const source = await open(4, '/source.bin', OPEN_FLAGS.READ);
      const target = await open(5, '/mixed.bin', OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.APPEND);
      // WRITE, copy-data, WRITE, ... pipelined: each appends where the file ends when it runs.
      const rounds = 40;
      const burst: Buffer[] = [];
      for (let i = 0; i < rounds; i++) {
        burst.push(new Writer(FXP.WRITE, 100 + 2 * i).bytes(target).uint64(0).bytes(Buffer.alloc(size, i)).finish());
        burst.push(
          new Writer(FXP.EXTENDED, 101 + 2 * i).string('copy-data').bytes(source).uint64(0).uint64(size).bytes(target).uint64(0).finish(),
        );
      }
      ch.write(Buffer.concat(burst));
      for (let i = 0; i < 2 * rounds; i++) assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      const file = readFileSync(join(srv.home('ola'), 'mixed.bin'));
      assert.equal(file.length, 2 * rounds * size);
      const order = Array.from({ length: 2 * rounds }, (_, k) => file[k * size]);
      assert.deepEqual(order, Array.from({ length: 2 * rounds }, (_, k) => (k % 2 === 0 ? k / 2 : 0xcc)));
    } finally {
      conn.end();
    }
  });

  it('runs a CLOSE, FSETSTAT, FSTAT and fsync sent right behind WRITEs after them: the upload is whole', async () => {
    const old = Buffer.from('OLD CONTENT\n'.repeat(1000));
    writeFileSync(join(srv.home('ola'), 'report.csv'), old);
    const chunk = 32 * 1024;
    const count = 16;
    const data = randomBytes(chunk * count);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'ola', password: 'ola password' });
    try {
      const { ch, next } = await initialised(conn);
      ch.write(new Writer(FXP.OPEN, 1).string('/report.csv').uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0).finish());
      const opened = await next();
      assert.equal(opened[0], FXP.HANDLE);
      const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
      // Every request without waiting for a reply, as a client pipelining its upload and its end does.
      const burst: Buffer[] = [];
      for (let i = 0; i < count; i++) burst.push(new Writer(FXP.WRITE, 10 + i).bytes(handle).uint64(i * chunk).bytes(data.subarray(i * chunk, (i + 1) * chunk)).finish());
      burst.push(new Writer(FXP.EXTENDED, 40).string('fsync@openssh.com').bytes(handle).finish());
      burst.push(new Writer(FXP.FSTAT, 41).bytes(handle).finish());
      burst.push(new Writer(FXP.FSETSTAT, 42).bytes(handle).uint32(0x4).uint32(0o640).finish());
      burst.push(new Writer(FXP.CLOSE, 43).bytes(handle).finish());
      ch.write(Buffer.concat(burst));
      const replies = new Map<number, Buffer>();
      for (let i = 0; i < count + 4; i++) {
        const reply = await next();
        replies.set(reply.readUInt32BE(1), reply);
      }
      for (let i = 0; i < count; i++) assert.equal(replies.get(10 + i)?.readUInt32BE(5), STATUS.OK, `WRITE ${i}`);
      assert.equal(replies.get(40)?.readUInt32BE(5), STATUS.OK, 'fsync');
      const attrs = replies.get(41) as Buffer;
      assert.equal(attrs[0], FXP.ATTRS);
      // ATTRS: type, id, flags, then the size (flag 0x1) first.
      assert.equal(Number(attrs.readBigUInt64BE(9)), data.length, 'FSTAT sees every WRITE before it');
      assert.equal(replies.get(42)?.readUInt32BE(5), STATUS.OK, 'fsetstat');
      assert.equal(replies.get(43)?.readUInt32BE(5), STATUS.OK, 'close');
    } finally {
      conn.end();
    }
    assert.ok(readFileSync(join(srv.home('ola'), 'report.csv')).equals(data), 'the file is what was sent, whole');
    const rec = (await srv.auditUntil((l) => l.event === 'upload' && l.path === '/report.csv')).findLast((l) => l.event === 'upload' && l.path === '/report.csv');
    assert.equal(rec?.result, 'ok');
    assert.equal(rec?.bytes, data.length);
    assert.equal(rec?.sha256, createHash('sha256').update(data).digest('hex'));
  });
  // JSch (com.jcraft 0.1.55, Debian's libjsch-java; its fork too) takes a DATA reply to any but its oldest
  // READ as a loss: it drops every READ outstanding and asks again from there. Answered as they completed,
  // JSch's get of a 5 MiB file read 9 to 16 MiB, and its record had `sha256: null`. OpenSSH's server and
  // pkg/sftp (SFTPGo) answer in order.
  it("answers one handle's READs in the order they came", async () => {
    const length = 32_755; // JSch's: its 32 KiB packet less the DATA header
    const count = 256;
    const data = randomBytes(length * count);
    writeFileSync(join(srv.home('ola'), 'in-order.bin'), data);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'ola', password: 'ola password' });
    try {
      const { ch, next } = await initialised(conn);
      ch.write(new Writer(FXP.OPEN, 1).string('/in-order.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
      const opened = await next();
      assert.equal(opened[0], FXP.HANDLE);
      const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
      // Completed out of order in 2 of 3 runs of one round before: four rounds.
      for (let round = 0; round < 4; round++) {
        const first = 100 + round * count;
        const reads = [];
        for (let i = 0; i < count; i++) reads.push(new Writer(FXP.READ, first + i).bytes(handle).uint64(i * length).uint32(length).finish());
        ch.write(Buffer.concat(reads));
        const order: number[] = [];
        const got: Buffer[] = [];
        for (let i = 0; i < count; i++) {
          const reply = await next();
          assert.equal(reply[0], FXP.DATA);
          order.push(reply.readUInt32BE(1) - first);
          got[reply.readUInt32BE(1) - first] = reply.subarray(9);
        }
        assert.deepEqual(order, [...order].sort((a, b) => a - b), `round ${round}: replies in the order of the READs`);
        assert.ok(Buffer.concat(got).equals(data));
      }
    } finally {
      conn.end();
    }
  });
});
