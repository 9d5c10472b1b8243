import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { SequenceHash } from '../src/session/sequence-hash.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const data = randomBytes(5 * 1024 * 1024 + 5);
const CHUNK = 32768 + 7;
const chunks = (from = 0) => {
  const out: [number, Buffer][] = [];
  for (let at = from; at < data.length; at += CHUNK) out.push([at, data.subarray(at, at + CHUNK)]);
  return out;
};

describe('SequenceHash: the SHA-256 of the bytes in file order, or null', () => {
  it('in order', () => {
    const h = new SequenceHash(0);
    for (const [at, c] of chunks()) h.update(at, c);
    assert.equal(h.digest(), sha256(data));
  });

  it('completed out of order (pipelined SFTP reads), within the bound', () => {
    const h = new SequenceHash(0);
    for (const [at, c] of chunks().reverse()) h.update(at, c);
    assert.equal(h.digest(), sha256(data));
  });

  it('keeps its own copy of a chunk it waits with: the caller may reuse its buffer (recycled SFTP replies)', () => {
    const h = new SequenceHash(0);
    const scratch = Buffer.alloc(CHUNK);
    for (const [at, c] of chunks().reverse()) {
      c.copy(scratch);
      h.update(at, scratch.subarray(0, c.length));
      scratch.fill(0xee);
    }
    assert.equal(h.digest(), sha256(data));
  });

  it('from a resume offset: the bytes from there on', () => {
    const h = new SequenceHash(32768);
    for (const [at, c] of chunks(32768)) h.update(at, c);
    assert.equal(h.digest(), sha256(data.subarray(32768)));
  });

  it('null when a region is written twice, a gap never fills, or a write failed', () => {
    const twice = new SequenceHash(0);
    for (const [at, c] of [...chunks(), ...chunks().slice(0, 1)]) twice.update(at, c);
    assert.equal(twice.digest(), null);
    const gap = new SequenceHash(0);
    for (const [at, c] of chunks().slice(1)) gap.update(at, c);
    assert.equal(gap.digest(), null);
    const failed = new SequenceHash(0);
    for (const [at, c] of chunks()) failed.update(at, c);
    failed.spoil();
    assert.equal(failed.digest(), null);
  });

  it('an empty or small transfer, and many streams at once', () => {
    const small = new SequenceHash(0);
    small.update(0, data.subarray(0, 1000));
    assert.equal(small.digest(), sha256(data.subarray(0, 1000)));
    assert.equal(new SequenceHash(0).digest(), sha256(Buffer.alloc(0)));
    const streams = Array.from({ length: 8 }, (_, i) => ({ h: new SequenceHash(0), bytes: data.subarray(i * 1000) }));
    for (let at = 0; at < data.length; at += CHUNK) for (const s of streams) s.h.update(at, s.bytes.subarray(at, at + CHUNK));
    const digests = streams.map((s) => s.h.digest());
    assert.deepEqual(digests, streams.map((s) => sha256(s.bytes)));
  });

  it('null rather than hold more than 16 MiB waiting for a gap', () => {
    const h = new SequenceHash(0);
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 1; i <= 17; i++) h.update(i * big.length, big);
    h.update(0, big);
    assert.equal(h.digest(), null);
  });

  it('bytes that still pass after the digest (a stream not yet torn down) are dropped, never thrown on', () => {
    const h = new SequenceHash(0);
    h.update(0, data.subarray(0, 100));
    assert.equal(h.digest(), sha256(data.subarray(0, 100)));
    // Before: the finished hash threw ERR_CRYPTO_HASH_FINALIZED here, uncaught in a stream's transform.
    assert.doesNotThrow(() => h.update(100, data.subarray(100, 200)));
    assert.equal(h.digest(), null);
  });
});
