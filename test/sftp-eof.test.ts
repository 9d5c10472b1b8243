// The client's EOF on an SFTP channel says it sends nothing more, not that it
// gave up what it sent: a client that pipes its requests (sftp -b, a script)
// sends EOF right after them. Each of them is answered, in order, and only
// the handles still open once they all are were abandoned. Before (found by a
// review), the EOF closed everything at once: 13 replies of 21 came back, the
// CLOSE none, and the upload was aborted though 14 WRITEs had been told Success.
// The channel's close, unlike its EOF, still aborts at once.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type ssh2 from 'ssh2';
import { FXP, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { diskUsage } from './helpers/quota.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';
import { until, type Internals } from './helpers/stall.js';

const KiB = 1024;
const WRITES = 20;
const CHUNK = 32 * KiB;
const UPLOAD = OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC;

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** OPEN for writing; the handle. */
async function open(ch: ssh2.ClientChannel, next: () => Promise<Buffer>, id: number, path: string): Promise<Buffer> {
  ch.write(new Writer(FXP.OPEN, id).string(path).uint32(UPLOAD).uint32(0).finish());
  const reply = await next();
  assert.equal(reply[0], FXP.HANDLE, `OPEN ${path}`);
  return reply.subarray(9, 9 + reply.readUInt32BE(5));
}

/** `data` as WRITEs of CHUNK bytes through `handle`, ids from `firstId`. */
function writes(handle: Buffer, data: Buffer, firstId: number): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0, id = firstId; at < data.length; at += CHUNK, id++) {
    out.push(new Writer(FXP.WRITE, id).bytes(handle).uint64(at).bytes(data.subarray(at, at + CHUNK)).finish());
  }
  return out;
}

describe('SFTP: the client\'s EOF after pipelined requests', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({
      users: [
        { name: 'pia', password: 'pia password' },
        // Its READs wait for the rate's room: still running when the channel closes.
        { name: 'slow', password: 'slow password', args: ['--rate-down', '64K'] },
      ],
    });
  });
  after(() => srv.stop());

  /** pia's connection, and its client port: the audit records of its session carry it. */
  async function connected(): Promise<{ conn: ssh2.Client; port: number }> {
    const conn = await sshConnect({ port: srv.sftpPort, username: 'pia', password: 'pia password' });
    conn.on('error', () => undefined);
    return { conn, port: (conn as unknown as Internals)._sock.localPort as number };
  }

  it('answers every request sent before it, stores the upload whole, and aborts only the handle left open', async () => {
    const { conn, port } = await connected();
    const data = randomBytes(WRITES * CHUNK);
    try {
      const { ch, next } = await initialised(conn);
      const exited = new Promise<number>((resolve) => ch.once('exit', (code: number) => resolve(code)));
      const closed = new Promise<null>((resolve) => ch.once('close', () => resolve(null)));
      const kept = await open(ch, next, 1, '/eof.bin');
      const left = await open(ch, next, 2, '/left-open.bin');
      // All in one go, the EOF right after: the upload's WRITEs and its CLOSE, and WRITEs through a handle never closed.
      const close = new Writer(FXP.CLOSE, 999).bytes(kept).finish();
      ch.write(Buffer.concat([...writes(kept, data, 10), close, ...writes(left, data.subarray(0, 4 * CHUNK), 500)]));
      ch.end();
      const expected = [...Array.from({ length: WRITES }, (_, i) => 10 + i), 500, 501, 502, 503, 999];
      const replies = new Map<number, number>();
      for (let i = 0; i < expected.length; i++) {
        // Not raced with the channel's close: ssh2 may emit the close before the data that came ahead of it.
        const reply = await Promise.race([next(), sleep(10_000, null, { ref: false })]);
        if (reply === null) break;
        assert.equal(reply[0], FXP.STATUS);
        const id = reply.readUInt32BE(1);
        assert.ok(!replies.has(id), `one reply for request ${id}`);
        replies.set(id, reply.readUInt32BE(5));
      }
      assert.deepEqual([...replies.keys()].sort((a, b) => a - b), expected, 'every request answered');
      for (const [id, code] of replies) assert.equal(code, STATUS.OK, `request ${id}`);
      // Then the server ends its side (OpenSSH's client waits for it), with the status ssh and scp expect.
      assert.equal(await exited, 0);
      await closed;
    } finally {
      conn.end();
    }
    const records = await srv.auditUntil((r) => r.event === 'logout' && r.port === port);
    const upload = records.find((r) => r.event === 'upload' && r.path === '/eof.bin' && r.port === port);
    assert.equal(upload?.result, 'ok', JSON.stringify(upload));
    assert.equal(upload?.bytes, data.length);
    assert.equal(upload?.sha256, sha256(data));
    assert.ok(readFileSync(join(srv.home('pia'), 'eof.bin')).equals(data), 'the file stored is the bytes sent, whole');
    // The handle never closed was abandoned: aborted once every request was answered, no name taken.
    const abandoned = records.find((r) => r.event === 'upload' && r.path === '/left-open.bin' && r.port === port);
    assert.equal(abandoned?.result, 'aborted', JSON.stringify(abandoned));
    assert.equal(existsSync(join(srv.home('pia'), 'left-open.bin')), false, 'the abandoned upload took no name');
    assert.deepEqual(diskUsage(srv.home('pia')).temps, [], 'no upload temporary left');
  });

  // Found with lftp: it sends a download's CLOSE and drops its connection without waiting for the reply,
  // and one download of a `mirror --parallel=4` in two was recorded aborted, every byte sent and taken.
  it('a CLOSE sent right before the channel\'s close ends its transfer as asked: the upload stored whole, the download ok', async () => {
    writeFileSync(join(srv.home('pia'), 'fetched.bin'), randomBytes(3 * CHUNK));
    const { conn, port } = await connected();
    const data = randomBytes(WRITES * CHUNK);
    try {
      const { ch, next } = await initialised(conn);
      const up = await open(ch, next, 1, '/closed-after-close.bin');
      ch.write(new Writer(FXP.OPEN, 2).string('/fetched.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
      const opened = await next();
      const down = opened.subarray(9, 9 + opened.readUInt32BE(5));
      for (let id = 3; id < 6; id++) ch.write(new Writer(FXP.READ, id).bytes(down).uint64((id - 3) * CHUNK).uint32(CHUNK).finish());
      for (let id = 3; id < 6; id++) assert.equal((await next())[0], FXP.DATA);
      // The upload's WRITEs and both CLOSEs, and the channel closed in the same turn: no reply awaited.
      ch.write(Buffer.concat([...writes(up, data, 10), new Writer(FXP.CLOSE, 998).bytes(down).finish(), new Writer(FXP.CLOSE, 999).bytes(up).finish()]));
      ch.close();
      const records = await srv.auditUntil((r) => r.event === 'logout' && r.port === port, 15_000);
      const upload = records.find((r) => r.event === 'upload' && r.path === '/closed-after-close.bin' && r.port === port);
      assert.equal(upload?.result, 'ok', JSON.stringify(upload));
      assert.equal(upload?.sha256, sha256(data));
      assert.ok(readFileSync(join(srv.home('pia'), 'closed-after-close.bin')).equals(data), 'the file stored is the bytes sent, whole');
      const download = records.find((r) => r.event === 'download' && r.path === '/fetched.bin' && r.port === port);
      assert.equal(download?.result, 'ok', JSON.stringify(download));
    } finally {
      conn.end();
    }
  });

  // Also lftp's: a download read to its end, then the connection dropped with its handle never closed.
  it('a download read to its end, then the channel closed without a CLOSE: ok; one read halfway: aborted', async () => {
    const body = randomBytes(3 * CHUNK);
    writeFileSync(join(srv.home('pia'), 'whole.bin'), body);
    writeFileSync(join(srv.home('pia'), 'half.bin'), body);
    const { conn, port } = await connected();
    try {
      const { ch, next } = await initialised(conn);
      const handles: Buffer[] = [];
      for (const [id, path] of [[1, '/whole.bin'], [2, '/half.bin']] as const) {
        ch.write(new Writer(FXP.OPEN, id).string(path).uint32(OPEN_FLAGS.READ).uint32(0).finish());
        const reply = await next();
        handles.push(reply.subarray(9, 9 + reply.readUInt32BE(5)));
      }
      const [whole, half] = handles as [Buffer, Buffer];
      // The whole file, and the READ past its end answered EOF; half of the other.
      for (let i = 0; i < 4; i++) ch.write(new Writer(FXP.READ, 10 + i).bytes(whole).uint64(i * CHUNK).uint32(CHUNK).finish());
      ch.write(new Writer(FXP.READ, 20).bytes(half).uint64(0).uint32(CHUNK).finish());
      const types = [];
      for (let i = 0; i < 5; i++) types.push((await next())[0]);
      assert.deepEqual(types.sort(), [FXP.STATUS, FXP.DATA, FXP.DATA, FXP.DATA, FXP.DATA].sort());
      ch.close();
      const records = await srv.auditUntil((r) => r.event === 'logout' && r.port === port, 15_000);
      const recorded = (path: string) => records.find((r) => r.event === 'download' && r.path === path && r.port === port);
      assert.deepEqual([recorded('/whole.bin')?.result, recorded('/whole.bin')?.sha256], ['ok', sha256(body)], JSON.stringify(recorded('/whole.bin')));
      assert.deepEqual([recorded('/half.bin')?.result, recorded('/half.bin')?.reason], ['aborted', 'channel closed'], JSON.stringify(recorded('/half.bin')));
    } finally {
      conn.end();
    }
  });

  // Found by a review: told EOF at the end first (an empty READ there), the client then asked for every byte and
  // closed the channel while those READs still ran. No reply of the channel was left untaken, as none had been made
  // yet: the download was recorded ok, though the client got none of its bytes.
  it('a download told its end, its READs still running when the channel closes: aborted', async () => {
    const body = randomBytes(4 * CHUNK);
    writeFileSync(join(srv.home('slow'), 'ahead.bin'), body);
    const conn = await sshConnect({ port: srv.sftpPort, username: 'slow', password: 'slow password' });
    conn.on('error', () => undefined);
    const port = (conn as unknown as Internals)._sock.localPort;
    try {
      const { ch, next } = await initialised(conn);
      ch.write(new Writer(FXP.OPEN, 1).string('/ahead.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
      const opened = await next();
      const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
      ch.write(new Writer(FXP.READ, 2).bytes(handle).uint64(body.length).uint32(0).finish());
      const eof = await next();
      assert.deepEqual([eof[0], eof.readUInt32BE(5)], [FXP.STATUS, STATUS.EOF]);
      const reads = [];
      for (let i = 0; i < 4; i++) reads.push(new Writer(FXP.READ, 10 + i).bytes(handle).uint64(i * CHUNK).uint32(CHUNK).finish());
      ch.write(Buffer.concat(reads));
      ch.close();
      const records = await srv.auditUntil((r) => r.event === 'logout' && r.port === port, 15_000);
      const download = records.find((r) => r.event === 'download' && r.path === '/ahead.bin' && r.port === port);
      assert.deepEqual([download?.result, download?.reason], ['aborted', 'channel closed'], JSON.stringify(download));
    } finally {
      conn.end();
    }
  });

  it('the channel closed (not only its input) mid-upload still aborts it, and nothing takes its name', async () => {
    const { conn, port } = await connected();
    try {
      const { ch, next } = await initialised(conn);
      const handle = await open(ch, next, 1, '/closed.bin');
      // WRITEs under way and no CLOSE: the client closes the channel, which says it takes no reply any more.
      ch.write(Buffer.concat(writes(handle, randomBytes(WRITES * CHUNK), 10)));
      ch.close();
      const records = await srv.auditUntil((r) => r.event === 'logout' && r.port === port, 15_000);
      const upload = records.find((r) => r.event === 'upload' && r.path === '/closed.bin' && r.port === port);
      assert.equal(upload?.result, 'aborted', JSON.stringify(upload));
      assert.equal(existsSync(join(srv.home('pia'), 'closed.bin')), false, 'no file under the final name');
      await until('the temporary removed', () => diskUsage(srv.home('pia')).temps.length === 0, 5_000);
    } finally {
      conn.end();
    }
  });
});
