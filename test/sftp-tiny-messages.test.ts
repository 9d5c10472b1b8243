import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type ssh2 from 'ssh2';
import { FXP, MAX_READ, OPEN_FLAGS, Writer } from '../src/sftp/codec.js';
import { sftpWithEveryRight } from './helpers/in-process.js';
import { call, sftpPackets, sshConnect } from './helpers/ssh.js';
import { collectGarbage } from './helpers/world.js';

/** What the whole process holds, server and client: both run here. */
function held(): number {
  collectGarbage();
  const { heapUsed, arrayBuffers } = process.memoryUsage();
  return heapUsed + arrayBuffers;
}

/*
 * A channel that has stopped reading (its connection's budget full of
 * replies the client does not take) still lets the client send what its
 * window holds. Sent a byte per SSH message, each byte waited in the
 * channel's stream as a Buffer of its own: about 144 bytes of the server
 * for each byte the window counted.
 */
describe('an SFTP channel that stopped reading', () => {
  it('holds what its client sends a byte per SSH message as bytes', async (t) => {
    const { srv, close, home } = await sftpWithEveryRight('trickle');
    try {
      const conn = await sshConnect({ port: srv.sftpPort, username: 'trickle', password: 'trickle password' });
      const ch = await new Promise<ssh2.ClientChannel>((resolve, reject) => conn.subsys('sftp', (err, c) => (err ? reject(err) : resolve(c))));
      const next = sftpPackets(ch);
      ch.write(new Writer(FXP.INIT).uint32(3).finish());
      assert.equal((await next())[0], FXP.VERSION);
      writeFileSync(join(home, 'big.bin'), Buffer.alloc(16 * 1024 * 1024, 7));
      ch.write(new Writer(FXP.OPEN, 1).string('/big.bin').uint32(OPEN_FLAGS.READ).uint32(0).finish());
      const reply = await next();
      const handle = reply.subarray(9, 9 + reply.readUInt32BE(5));
      // From now on the client reads nothing: its window (2 MiB) fills, then the server's budget (8 MiB).
      ch.removeAllListeners('data');
      ch.pause();
      for (let i = 0; i < 64; i++) ch.write(new Writer(FXP.READ, 10 + i).bytes(handle).uint64(i * MAX_READ).uint32(MAX_READ).finish());
      const incoming = (ch as unknown as { incoming: { window: number } }).incoming;
      while (incoming.window > 0) await sleep(5);
      // STATs, a byte per SSH message: those the channel still reads are answered, the rest wait.
      const stats = Buffer.concat(Array.from({ length: 10_000 }, (_, i) => new Writer(FXP.STAT, 100 + i).string('/').finish()));
      const window = (ch as unknown as { outgoing: { window: number } }).outgoing.window;
      const bytes = stats.subarray(0, Math.min(stats.length, window));
      const before = held();
      for (const byte of bytes) ch.write(Buffer.from([byte]));
      // A global request is answered once the server has read everything sent before it.
      await call((cb) => conn.forwardIn('127.0.0.1', 0, (err) => cb(err ? null : new Error('forwarding accepted'))));
      const grown = held() - before;
      t.diagnostic(`${bytes.length} bytes sent one a message; the process grew by ${(grown / 1024).toFixed(0)} KiB`);
      assert.ok(bytes.length > 50_000, `the window let only ${bytes.length} bytes through`);
      // Both ends run here, and the client's side varies by a few hundred KiB from run to run.
      assert.ok(grown < bytes.length * 32, `the process grew by ${(grown / bytes.length).toFixed(0)} bytes per byte sent`);
      // Read again, the client gets every reply: the bytes kept went to the channel in the order sent.
      const replies = sftpPackets(ch);
      ch.resume();
      const count = 64 + Math.floor(bytes.length / 14);
      const answered = new Set<number>();
      for (let i = 0; i < count; i++) {
        const r = await replies();
        answered.add(r.readUInt32BE(1));
        assert.ok(r[0] === FXP.DATA || r[0] === FXP.ATTRS, `reply ${i} is of type ${r[0]}`);
      }
      assert.equal(answered.size, count);
      conn.end();
    } finally {
      await close();
    }
  });
});
