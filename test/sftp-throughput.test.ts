import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { FXP, MAX_READ, OPEN_FLAGS, STATUS, Writer, dataPacket, decodePacket } from '../src/sftp/codec.js';
import { leadingRun, writeRequest } from '../src/sftp/handlers.js';
import { WindowPool, channelWindow } from '../src/sftp/window.js';
import { TestServer } from './helpers/server.js';
import { call, initialised, sftpOf, sshConnect } from './helpers/ssh.js';

const MiB = 1024 * 1024;

describe('SFTP throughput parts (pure)', () => {
  it('frames a DATA reply around the bytes read into it, short at the end, none at EOF', async () => {
    const content = Buffer.from('abcdefgh');
    const fill = (n: number) => async (into: Buffer, at: number) => content.copy(into, at, 0, n);
    const full = await dataPacket(7, 8, fill(8));
    assert.deepEqual(full, new Writer(FXP.DATA, 7).bytes(content).finish());
    const short = await dataPacket(9, 8, fill(3));
    assert.deepEqual(short, new Writer(FXP.DATA, 9).bytes(content.subarray(0, 3)).finish());
    assert.equal(await dataPacket(9, 8, fill(0)), null);
  });

  it('finds the leading run of consecutive WRITEs, within a byte cap', () => {
    const w = (id: number, offset: number, n: number) =>
      writeRequest(decodePacket(new Writer(FXP.WRITE, id).bytes(Buffer.from('h')).uint64(offset).bytes(Buffer.alloc(n)).finish().subarray(4)));
    const stat = writeRequest(decodePacket(new Writer(FXP.STAT, 1).string('/a').finish().subarray(4)));
    assert.equal(stat, null, 'not a WRITE');
    assert.equal(writeRequest(decodePacket(new Writer(FXP.WRITE, 1).bytes(Buffer.from('h')).finish().subarray(4))), null, 'malformed');
    const table: [string, ReturnType<typeof w>[], number, number][] = [
      ['nothing', [], 100, 0],
      ['a malformed or other request first', [null, w(1, 0, 10)], 100, 0],
      ['one', [w(1, 0, 10)], 100, 1],
      ['consecutive', [w(1, 0, 10), w(2, 10, 10), w(3, 20, 5)], 100, 3],
      ['a gap ends it', [w(1, 0, 10), w(2, 10, 10), w(3, 25, 5)], 100, 2],
      ['a rewrite ends it', [w(1, 0, 10), w(2, 0, 10)], 100, 1],
      ['another request ends it', [w(1, 0, 10), null, w(3, 10, 5)], 100, 1],
      ['the cap ends it', [w(1, 0, 10), w(2, 10, 10), w(3, 20, 10)], 25, 2],
      ['the first goes even past the cap', [w(1, 0, 50), w(2, 50, 10)], 25, 1],
    ];
    for (const [what, writes, cap, n] of table) assert.equal(leadingRun(writes, cap), n, what);
  });

  it('lends a channel what the others do not hold beyond their shares, never less than its share', () => {
    const share = channelWindow(8 * MiB, 10);
    const pool = new WindowPool(8 * MiB, share);
    const a = pool.join();
    assert.equal(a.target(), 8 * MiB, 'alone: the whole pool');
    const b = pool.join();
    assert.equal(a.target(), 8 * MiB - share, 'a new channel is sure of its share');
    a.held = () => 7 * MiB;
    assert.equal(b.target(), 1 * MiB);
    a.held = () => 8 * MiB - share;
    assert.equal(b.target(), share);
    b.held = () => 0;
    assert.equal(a.target(), 8 * MiB - share, 'an idle channel still keeps its share');
    b.leave();
    assert.equal(a.target(), 8 * MiB, 'and gives it back when it goes');
  });
});

async function open(ch: ssh2.ClientChannel, next: () => Promise<Buffer>, path: string, flags: number): Promise<Buffer> {
  ch.write(new Writer(FXP.OPEN, 1).string(path).uint32(flags).uint32(0).finish());
  const reply = await next();
  assert.equal(reply[0], FXP.HANDLE);
  return reply.subarray(9, 9 + reply.readUInt32BE(5));
}

describe('SFTP throughput (OpenSSH-sized requests)', () => {
  let srv: TestServer;
  const content = randomBytes(3 * MiB + 12345);
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'tess', password: 'tess password', args: ['--perms', 'all'] }] });
    writeFileSync(join(srv.home('tess'), 'big.bin'), content);
  });
  after(() => srv.stop());
  const login = () => sshConnect({ port: srv.sftpPort, username: 'tess', password: 'tess password' });

  it('answers a 255 KiB READ in full, a READ over the end short, one at the end with EOF', async () => {
    const conn = await login();
    try {
      const { ch, next } = await initialised(conn);
      const handle = await open(ch, next, '/big.bin', OPEN_FLAGS.READ);
      const read = async (offset: number, length: number) => {
        ch.write(new Writer(FXP.READ, 2).bytes(handle).uint64(offset).uint32(length).finish());
        return next();
      };
      const whole = await read(1000, 2 ** 31);
      assert.equal(whole[0], FXP.DATA);
      assert.equal(whole.readUInt32BE(5), MAX_READ);
      assert.deepEqual(whole.subarray(9), content.subarray(1000, 1000 + MAX_READ));
      const tail = await read(content.length - 100, MAX_READ);
      assert.equal(tail.readUInt32BE(5), 100);
      assert.deepEqual(tail.subarray(9), content.subarray(content.length - 100));
      const end = await read(content.length, MAX_READ);
      assert.equal(end[0], FXP.STATUS);
      assert.equal(end.readUInt32BE(5), STATUS.EOF);
    } finally {
      conn.end();
    }
  });

  it('answers pipelined small requests without waiting for the client to acknowledge the first reply (no Nagle)', async () => {
    // Replies to requests that arrive together go out in different turns (each waits on the
    // file system); with Nagle on, every reply after the first waited for the client's
    // delayed ACK, 40 ms on Linux. The client here has Nagle off, as OpenSSH's has.
    const conn = await login();
    try {
      conn.setNoDelay(true);
      const sftp = await sftpOf(conn);
      const stat = () => call<ssh2.Stats>((cb) => sftp.stat('/big.bin', cb));
      const rounds: number[] = [];
      for (let i = 0; i < 30; i++) {
        const t0 = performance.now();
        await Promise.all([stat(), stat(), stat(), stat()]);
        rounds.push(performance.now() - t0);
      }
      rounds.sort((a, b) => a - b);
      const median = rounds[15] as number;
      // Nagle makes every round wait 40 ms or more; a loaded CI once gave a median of 21.6 ms without it (2-129).
      assert.ok(median < 35, `median of 30 rounds of 4 pipelined STATs: ${median.toFixed(1)} ms (all: ${rounds.map((r) => r.toFixed(0)).join(' ')})`);
    } finally {
      conn.end();
    }
  });

  it('lands 255 KiB WRITEs pipelined 64 deep at their offsets, a rewrite of one after it, and audits their SHA-256', async () => {
    const conn = await login();
    try {
      const { ch, next } = await initialised(conn);
      const handle = await open(ch, next, '/up.bin', OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC);
      const burst: Buffer[] = [];
      let id = 10;
      for (let at = 0; at < content.length; at += MAX_READ) {
        burst.push(new Writer(FXP.WRITE, id++).bytes(handle).uint64(at).bytes(content.subarray(at, at + MAX_READ)).finish());
      }
      // The same bytes again over the second chunk, in the same pipeline: they must land after the first.
      burst.push(new Writer(FXP.WRITE, id++).bytes(handle).uint64(MAX_READ).bytes(content.subarray(MAX_READ, 2 * MAX_READ)).finish());
      ch.write(Buffer.concat(burst));
      for (let i = 0; i < burst.length; i++) {
        const reply = await next();
        assert.equal(reply.readUInt32BE(5), STATUS.OK);
      }
      ch.write(new Writer(FXP.CLOSE, 3).bytes(handle).finish());
      assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      assert.deepEqual(readFileSync(join(srv.home('tess'), 'up.bin')), content);
    } finally {
      conn.end();
    }
  });

  it("opens one busy channel's SSH window past its fixed share of the connection's budget", async () => {
    const conn = await login();
    try {
      const { ch, next } = await initialised(conn);
      const share = channelWindow(8 * MiB, 10);
      const handle = await open(ch, next, '/window.bin', OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC);
      // More than the share, so that the server re-opens the window at least once.
      const burst: Buffer[] = [];
      for (let i = 0; i < 8; i++) burst.push(new Writer(FXP.WRITE, 10 + i).bytes(handle).uint64(i * MAX_READ).bytes(content.subarray(i * MAX_READ, (i + 1) * MAX_READ)).finish());
      ch.write(Buffer.concat(burst));
      for (let i = 0; i < burst.length; i++) assert.equal((await next()).readUInt32BE(5), STATUS.OK);
      const window = (ch as unknown as { outgoing: { window: number } }).outgoing.window;
      assert.ok(window > 2 * share, `window ${window} beyond the share ${share}`);
    } finally {
      conn.end();
    }
  });
});
