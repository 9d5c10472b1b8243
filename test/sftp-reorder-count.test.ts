// SFTP WRITEs may arrive out of file order; the upload's SHA-256 is of the bytes in file order, so chunks
// ahead of a gap wait for it (session/sequence-hash.ts), within 16 MiB per transfer and 32 MiB per process.
// Found by the review of what clients can grow: those bounds counted the chunks' bytes only. A chunk of one
// byte held some 140 bytes more (its Buffer, its share of a slab, its map entry: Node 20), so one-byte
// WRITEs ahead of a gap, a few dozen bytes each on the wire, could make a process hold about 6 GiB
// within the 32 MiB counted, more than its heap takes, and every session of the process went with it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, it } from 'node:test';
import { FXP, OPEN_FLAGS, Writer } from '../src/sftp/codec.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

let srv: TestServer;
before(async () => {
  srv = await TestServer.start({ users: [{ name: 'dave', password: 'dave password' }] });
});
after(() => srv.stop());

/** One-byte chunks sent ahead of the file's first byte: more than 16 MiB held once each costs what it holds. */
const AHEAD = 100_000;

it('one-byte WRITEs ahead of a gap count what holding each costs: past the bound the hash is given up, not held', { timeout: 120_000 }, async () => {
  const conn = await sshConnect({ port: srv.sftpPort, username: 'dave', password: 'dave password' });
  try {
    const { ch, next } = await initialised(conn);
    ch.write(new Writer(FXP.OPEN, 1).string('/sparse.bin').uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0).finish());
    const opened = await next();
    assert.equal(opened[0], FXP.HANDLE);
    const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
    const write = (id: number, offset: number) => new Writer(FXP.WRITE, id).bytes(handle).uint64(offset).bytes(Buffer.from([offset % 251])).finish();
    // In runs of 500, each answered before the next goes: the server's in-flight cap would hold the rest anyway.
    for (let from = 1; from <= AHEAD; from += 500) {
      const upTo = Math.min(from + 500, AHEAD + 1);
      const run: Buffer[] = [];
      for (let offset = from; offset < upTo; offset++) run.push(write(offset + 1, offset));
      ch.write(Buffer.concat(run));
      for (let offset = from; offset < upTo; offset++) {
        const reply = await next();
        assert.equal(reply[0], FXP.STATUS);
        assert.equal(reply.readUInt32BE(5), 0, `WRITE at ${offset} succeeded`);
      }
    }
    // The gap filled: every byte is there, in order.
    ch.write(write(AHEAD + 2, 0));
    assert.equal((await next()).readUInt32BE(5), 0);
    ch.write(new Writer(FXP.CLOSE, AHEAD + 3).bytes(handle).finish());
    assert.equal((await next()).readUInt32BE(5), 0);
  } finally {
    conn.end();
  }
  const { stored, record: upload } = await srv.uploaded('dave', '/sparse.bin');
  assert.equal(stored.length, AHEAD + 1);
  assert.equal(upload?.result, 'ok');
  // Given up: no hash rather than one that held 100,000 chunks to make (before, the file's own).
  assert.equal(upload?.sha256 ?? null, null, `sha256 ${String(upload?.sha256)} (the file's: ${createHash('sha256').update(stored).digest('hex')})`);
});
