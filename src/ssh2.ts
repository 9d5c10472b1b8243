import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import type Ssh2 from 'ssh2';

/**
 * ssh2, loaded so that its packets' random padding comes from a pool of
 * CSPRNG bytes instead of one randomFillSync per packet. Each such call
 * costs a few microseconds however few bytes it fills (OpenSSL's generator,
 * its locks and a getpid): 4.9 µs on average in the server here, one per
 * 32 KiB DATA packet of a download, about 0.16 ms of the event loop per MiB,
 * 8 % of it. The pool is filled by the same generator, 16 KiB at a time, and
 * each byte is handed out once: the padding is as random as before. ssh2
 * takes randomFillSync from node:crypto when its modules load, so the pooled
 * one is in place only while ssh2 loads here; the rest of the process keeps
 * Node's own. Every module takes ssh2's values from here and only types from 'ssh2'
 * (test/architecture.test.ts), or the first to load it would decide which
 * one ssh2 keeps.
 */
const POOL_BYTES = 16 * 1024;
/** Larger fills (none in ssh2 today) go to the generator directly. */
const MOST_POOLED = 256;

const generate = crypto.randomFillSync;
let pool = Buffer.alloc(0);
let taken = 0;
let served = 0;

function pooledRandomFill<T extends NodeJS.ArrayBufferView>(buf: T, offset = 0, size?: number): T {
  const length = size ?? buf.byteLength - offset;
  if (!Buffer.isBuffer(buf) || length > MOST_POOLED || offset < 0 || length < 0 || offset + length > buf.length) return generate(buf, offset, size);
  if (taken + length > pool.length) {
    pool = generate(Buffer.allocUnsafe(POOL_BYTES));
    taken = 0;
  }
  pool.copy(buf, offset, taken, taken + length);
  taken += length;
  served += length;
  return buf;
}

/** Bytes ssh2 has taken from the pool so far (for the test that it still does). */
export function pooledBytesServed(): number {
  return served;
}

function load(): typeof Ssh2 {
  const mutable = crypto as { randomFillSync: typeof crypto.randomFillSync };
  mutable.randomFillSync = pooledRandomFill as typeof crypto.randomFillSync;
  try {
    return createRequire(import.meta.url)('ssh2') as typeof Ssh2;
  } finally {
    mutable.randomFillSync = generate;
  }
}

let loaded: typeof Ssh2 | null = null;

/**
 * The ssh2 module, loaded at the first call (the CLI's user commands mostly
 * never need it: loading it was an eighth of `sluice user list`'s CPU).
 * Its types come from `import type ... from 'ssh2'`.
 */
export function ssh2Library(): typeof Ssh2 {
  return (loaded ??= load());
}
