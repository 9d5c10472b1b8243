import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { SequenceHash } from '../src/session/sequence-hash.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
// Past several 1 MiB batches, so the hash thread does the work; odd-sized
// chunks so that batches split them.
const data = randomBytes(5 * 1024 * 1024 + 5);
const CHUNK = 32768 + 7;
const chunks = (from = 0) => {
  const out: [number, Buffer][] = [];
  for (let at = from; at < data.length; at += CHUNK) out.push([at, data.subarray(at, at + CHUNK)]);
  return out;
};

describe('SequenceHash: the SHA-256 of the bytes in file order, or null', async () => {
  it('in order', async () => {
    const h = new SequenceHash(0);
    for (const [at, c] of chunks()) h.update(at, c);
    assert.equal(await h.digest(), sha256(data));
  });

  it('completed out of order (pipelined SFTP reads), within the bound', async () => {
    const h = new SequenceHash(0);
    for (const [at, c] of chunks().reverse()) h.update(at, c);
    assert.equal(await h.digest(), sha256(data));
  });

  it('from a resume offset: the bytes from there on', async () => {
    const h = new SequenceHash(32768);
    for (const [at, c] of chunks(32768)) h.update(at, c);
    assert.equal(await h.digest(), sha256(data.subarray(32768)));
  });

  it('null when a region is written twice, a gap never fills, or a write failed', async () => {
    const twice = new SequenceHash(0);
    for (const [at, c] of [...chunks(), ...chunks().slice(0, 1)]) twice.update(at, c);
    assert.equal(await twice.digest(), null);
    const gap = new SequenceHash(0);
    for (const [at, c] of chunks().slice(1)) gap.update(at, c);
    assert.equal(await gap.digest(), null);
    const failed = new SequenceHash(0);
    for (const [at, c] of chunks()) failed.update(at, c);
    failed.spoil();
    assert.equal(await failed.digest(), null);
  });

  it('small transfers (hashed in place) and many streams at once', async () => {
    const small = new SequenceHash(0);
    small.update(0, data.subarray(0, 1000));
    assert.equal(await small.digest(), sha256(data.subarray(0, 1000)));
    assert.equal(await new SequenceHash(0).digest(), sha256(Buffer.alloc(0)));
    const streams = Array.from({ length: 8 }, (_, i) => ({ h: new SequenceHash(0), bytes: data.subarray(i * 1000) }));
    for (let at = 0; at < data.length; at += CHUNK) for (const s of streams) s.h.update(at, s.bytes.subarray(at, at + CHUNK));
    const digests = await Promise.all(streams.map((s) => s.h.digest()));
    assert.deepEqual(digests, streams.map((s) => sha256(s.bytes)));
  });

  it('the transfer waits while the hash thread is far behind, and goes on once it catches up', async () => {
    const h = new SequenceHash(0);
    const big = randomBytes(1024 * 1024);
    const whole = createHash('sha256');
    let waited = 0;
    for (let i = 0; i < 64; i++) {
      h.update(i * big.length, big);
      whole.update(big);
      const room = h.room();
      if (room) {
        waited++;
        await room;
      }
    }
    assert.ok(waited > 0, 'a 64 MiB burst outran the hash thread');
    assert.equal(await h.digest(), whole.digest('hex'));
  });

  it('null rather than hold more than 16 MiB waiting for a gap', async () => {
    const h = new SequenceHash(0);
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 1; i <= 17; i++) h.update(i * big.length, big);
    h.update(0, big);
    assert.equal(await h.digest(), null);
  });
});
