import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ByteQueue } from '../src/wire/byte-queue.js';
import { cpuSince } from './helpers/cpu-time.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

let seed = 0xb17e;
const rand = (n: number) => {
  seed = (seed * 1103515245 + 12345) >>> 0;
  return seed % n;
};

describe('ByteQueue: bytes received and not yet taken, however the peer cut them', () => {
  it('gives back exactly the bytes pushed, in order, whatever the chunks and the takes (against a plain buffer)', () => {
    for (let round = 0; round < 30; round++) {
      const q = new ByteQueue();
      let reference = Buffer.alloc(0);
      let counter = 0;
      const kept: [Buffer, Buffer][] = [];
      for (let step = 0; step < 400; step++) {
        if (rand(3) > 0) {
          const size = rand(4) === 0 ? rand(5000) : rand(4);
          const chunk = Buffer.from(Array.from({ length: size }, () => counter++ & 0xff));
          q.push(chunk);
          reference = Buffer.concat([reference, chunk]);
        } else if (reference.length > 0) {
          const n = 1 + rand(reference.length);
          assert.ok(q.peek(n).equals(reference.subarray(0, n)), `round ${round}, step ${step}: peek ${n}`);
          const taken = q.take(n);
          assert.ok(taken.equals(reference.subarray(0, n)), `round ${round}, step ${step}: take ${n}`);
          kept.push([taken, Buffer.from(taken)]);
          reference = reference.subarray(n);
        }
        assert.equal(q.size, reference.length);
      }
      // What take() gave stays as it was, whatever came after it.
      for (const [taken, copy] of kept) assert.ok(taken.equals(copy), `round ${round}: a taken buffer changed`);
      q.clear();
      assert.equal(q.size, 0);
    }
  });

  it('takes in time linear in the bytes: a megabyte pushed a byte at a time, then taken whole', () => {
    const q = new ByteQueue();
    const one = Buffer.of(7);
    const spent = cpuSince();
    for (let i = 0; i < 1024 * 1024; i++) {
      q.push(one);
      if (q.size >= 4) q.peek(4);
    }
    const all = q.take(q.size);
    const ms = spent();
    assert.equal(all.length, 1024 * 1024);
    assert.ok(all.every((b) => b === 7));
    // Linear: well under a second here. Joining or shifting the chunks on each call took minutes.
    assert.ok(ms < 3000, `${ms.toFixed(0)} ms of CPU`);
  });

  it('a few bytes waiting hold a few hundred bytes of buffer, however many queues wait so', () => {
    gc();
    const before = process.memoryUsage().arrayBuffers;
    const queues = Array.from({ length: 2000 }, () => {
      const q = new ByteQueue();
      q.push(Buffer.of(1));
      q.push(Buffer.of(2));
      q.push(Buffer.of(3));
      return q;
    });
    gc();
    const perQueue = (process.memoryUsage().arrayBuffers - before) / queues.length;
    assert.deepEqual([...queues[0]!.take(3)], [1, 2, 3]);
    assert.ok(perQueue < 1024, `${perQueue.toFixed(0)} bytes of buffers per queue`);
  });

  it('holds about the bytes waiting, not a buffer object per tiny chunk', () => {
    gc();
    const before = process.memoryUsage();
    const queues = Array.from({ length: 100 }, () => {
      const q = new ByteQueue();
      for (let i = 0; i < 4000; i++) q.push(Buffer.of(i & 0xff));
      return q;
    });
    gc();
    const after = process.memoryUsage();
    const heapPerQueue = (after.heapUsed - before.heapUsed) / queues.length;
    const buffersPerQueue = (after.arrayBuffers - before.arrayBuffers) / queues.length;
    assert.equal(queues[0]!.size, 4000);
    // 4,000 bytes each: held as 4,000 one-byte chunks they took about 300 KB of heap a queue.
    assert.ok(heapPerQueue < 16 * 1024, `${(heapPerQueue / 1024).toFixed(1)} KiB of heap per queue`);
    assert.ok(buffersPerQueue < 40 * 1024, `${(buffersPerQueue / 1024).toFixed(1)} KiB of buffers per queue`);
  });

  it('takeAll: everything queued at once, an empty buffer when nothing waits', () => {
    const q = new ByteQueue();
    assert.equal(q.takeAll().length, 0);
    q.push(Buffer.from('ab'));
    q.push(Buffer.from('c'));
    q.push(Buffer.from('def'));
    assert.equal(q.takeAll().toString(), 'abcdef');
    assert.equal(q.size, 0);
    assert.equal(q.takeAll().length, 0);
  });
});
