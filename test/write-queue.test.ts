import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { WriteQueue } from '../src/session/write-queue.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-wq-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** A real file whose writev calls are counted. */
async function counted(name: string, flags = 'w+'): Promise<{ file: FileHandle; calls: number[] }> {
  const file = await open(join(dir, name), flags);
  const calls: number[] = [];
  const writev = file.writev.bind(file);
  file.writev = ((buffers: NodeJS.ArrayBufferView[], position?: number) => {
    calls.push(buffers.length);
    return writev(buffers, position);
  }) as FileHandle['writev'];
  return { file, calls };
}

describe('WriteQueue: one write at a time, what waits goes out as one writev', () => {
  it('32 KiB requests issued at once reach the file intact in a few writes', async () => {
    const { file, calls } = await counted('seq');
    const data = randomBytes(64 * 32768 + 11);
    const q = new WriteQueue(file);
    const writes: Promise<void>[] = [];
    for (let at = 0; at < data.length; at += 32768) writes.push(q.write(data.subarray(at, at + 32768), at));
    await Promise.all(writes);
    await file.close();
    assert.deepEqual(readFileSync(join(dir, 'seq')), data);
    // The first goes alone; the rest wait for it and go out in 1 MiB batches.
    assert.ok(calls.length <= 4, `${calls.length} writes for 65 requests`);
    assert.ok(calls.every((n) => n <= 64));
  });

  it('writes out of order, overlapping or with gaps land where they were asked to', async () => {
    const { file } = await counted('scatter');
    const q = new WriteQueue(file);
    const a = Buffer.alloc(1000, 'a');
    const b = Buffer.alloc(1000, 'b');
    await Promise.all([q.write(a, 5000), q.write(b, 0), q.write(a.subarray(0, 10), 995), q.write(Buffer.alloc(0), 7000), q.write(b, 6000)]);
    await file.close();
    const got = readFileSync(join(dir, 'scatter'));
    assert.equal(got.length, 7000);
    assert.deepEqual(got.subarray(0, 995), b.subarray(0, 995));
    assert.deepEqual(got.subarray(995, 1005), a.subarray(0, 10));
    assert.deepEqual(got.subarray(1005, 5000), Buffer.alloc(3995));
    assert.deepEqual(got.subarray(5000, 6000), a);
    assert.deepEqual(got.subarray(6000), b);
  });

  it('appends (no position) in the order given', async () => {
    writeFileSync(join(dir, 'append'), 'start:');
    const { file } = await counted('append', 'a');
    const q = new WriteQueue(file);
    await Promise.all(['1', '2', '3', '4'].map((s) => q.write(Buffer.from(s), null)));
    await file.close();
    assert.equal(readFileSync(join(dir, 'append'), 'utf8'), 'start:1234');
  });

  it('a failing write rejects every request it carried, and later ones still run', async () => {
    writeFileSync(join(dir, 'ro'), 'x');
    const { file } = await counted('ro', 'r');
    const q = new WriteQueue(file);
    const results = await Promise.allSettled([q.write(Buffer.from('a'), 0), q.write(Buffer.from('b'), 1), q.write(Buffer.from('c'), 2)]);
    assert.deepEqual(results.map((r) => r.status), ['rejected', 'rejected', 'rejected']);
    assert.equal((results[1] as PromiseRejectedResult).reason.code, 'EBADF');
    await assert.rejects(q.write(Buffer.from('d'), 3), { code: 'EBADF' });
    await file.close();
    assert.equal(readFileSync(join(dir, 'ro'), 'utf8'), 'x');
  });
});
