import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DirectoryListing, sortByBytes } from '../src/session/listing.js';
import type { DirectoryReader, NodeStat } from '../src/session/storage/storage.js';

/*
 * Found by a review: every open listing held all of its directory's names
 * until closed, so 256 SFTP handles on a directory of 80,000 long names ran
 * the heap out and killed the process. A listing sorts at most 20,000 names
 * and the process's listings share a budget; past either they go on in
 * sorted runs of 512. Every entry still comes once.
 */
const stat: NodeStat = { type: 'file', size: 0, mode: 0o100644, nlink: 1, uid: 0, gid: 0, mtime: new Date(0), atime: new Date(0), ctimeMs: 0, ino: 1, dev: 1 };

/** A directory of `names` given in a scrambled order, as a file system would. */
function directory(names: readonly string[]): DirectoryReader & { closed: boolean } {
  // A fixed shuffle (Fisher-Yates on a small LCG): no two runs of a batch line up by chance.
  const order = [...names];
  let seed = 12345;
  for (let i = order.length - 1; i > 0; i--) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const j = seed % (i + 1);
    [order[i], order[j]] = [order[j] as string, order[i] as string];
  }
  let at = 0;
  return {
    closed: false,
    async names(max) {
      const out = order.slice(at, at + max);
      at += out.length;
      return out;
    },
    async stat() {
      return stat;
    },
    async readlink() {
      return null;
    },
    async whereNow() {
      return '/';
    },
    async info() {
      return stat;
    },
    // Listings never change their directory, nor ask for its room.
    async chmod() {},
    async setTimes() {},
    async space() {
      throw new Error('not asked of a listing');
    },
    async close() {
      this.closed = true;
    },
  };
}
const named = (n: number, width = 12) => Array.from({ length: n }, (_, i) => `f${String(i).padStart(width, '0')}`);

async function all(listing: DirectoryListing): Promise<string[]> {
  const out: string[] = [];
  for (let batch = await listing.read(1000); batch.length > 0; batch = await listing.read(1000)) out.push(...batch.map((e) => e.name));
  return out;
}

/** Lengths of the ascending runs of `names`. */
function runs(names: readonly string[]): number[] {
  const lengths = [1];
  for (let i = 1; i < names.length; i++) {
    if ((names[i] as string) > (names[i - 1] as string)) lengths[lengths.length - 1]!++;
    else lengths.push(1);
  }
  return lengths;
}

describe('DirectoryListing: reads at once', () => {
  it('two reads asked together (SFTP READDIRs sent at once on one handle) give every name once, in order', async () => {
    const names = named(3_000);
    const listing = new DirectoryListing(directory(names), () => null, '/');
    const out: string[] = [];
    for (;;) {
      const [a, b] = await Promise.all([listing.read(700), listing.read(700)]);
      out.push(...a.map((e) => e.name), ...b.map((e) => e.name));
      if (b.length === 0) break;
    }
    assert.deepEqual(out, names);
  });
});

describe('DirectoryListing: bounded sorting', () => {
  it('sorts a directory of up to 20,000 names whole', async () => {
    const names = named(20_000);
    assert.deepEqual(await all(new DirectoryListing(directory(names), () => null, '/')), names);
  });

  it('gives a larger one whole, once each: 20,000 sorted, then runs of at most 512', async () => {
    const names = named(30_000);
    const listed = await all(new DirectoryListing(directory(names), () => null, '/'));
    assert.deepEqual([...listed].sort(), names, 'every name once');
    const r = runs(listed);
    assert.ok((r[0] as number) >= 20_000, `first run ${r[0]}`);
    assert.ok(r.slice(1).every((n) => n <= 512), 'later runs of a batch at most');
  });

  it('shares a budget among open listings, and gives it back on close', async () => {
    // 20,000 names of 255 bytes, the longest a name can be (longer ones are not listed), hold about 6 MiB
    // each: ten all but fill the 64 MiB budget.
    const names = named(20_000, 254);
    const open = Array.from({ length: 12 }, () => new DirectoryListing(directory(names), () => null, '/'));
    // Each holds its first run until it has been read through: all eight are started before any is.
    const heads = [];
    for (const listing of open) heads.push(await listing.read(1));
    const firstRuns: number[] = [];
    for (const [i, listing] of open.entries()) {
      const listed: string[] = [...(heads[i] ?? []), ...(await listing.read(20_000))].map((e) => e.name);
      assert.equal(listed.length, 20_000);
      firstRuns.push(runs(listed)[0] as number);
    }
    assert.deepEqual(firstRuns.slice(0, 10), Array.from({ length: 10 }, () => 20_000));
    assert.ok(firstRuns.slice(-1)[0]! <= 512, `with the budget spent, runs of a batch: ${firstRuns}`);
    for (const listing of open) await listing.close();
    const again = new DirectoryListing(directory(names), () => null, '/');
    assert.deepEqual(await all(again), names, 'the budget was given back');
  });

  it('a listing closed while it gathers keeps no charge', async () => {
    // Found by a review: a batch read after close() was charged after close() had given back the rest.
    const long = named(512, 254);
    for (let i = 0; i < 420; i++) {
      const listing = new DirectoryListing(directory(long), () => null, '/');
      const reading = listing.read(10);
      await listing.close();
      await reading;
    }
    // 420 leaked batches of about 160 KiB would hold the whole budget: this one would come in runs of 512.
    const names = named(2000);
    assert.deepEqual(await all(new DirectoryListing(directory(names), () => null, '/')), names);
  });

  it('sortByBytes is the order of UTF-8 bytes, past U+FFFF and around U+E000 too', () => {
    const alphabet = [0x41, 0x7a, 0xe9, 0x4e2d, 0xd7ff, 0xe000, 0xfb01, 0xfffd, 0x10000, 0x1f600, 0x10ffff];
    for (let k = 0; k < 3000; k++) {
      const names = Array.from({ length: 12 }, () => String.fromCodePoint(...Array.from({ length: 1 + (k % 4) }, () => alphabet[Math.floor(Math.random() * alphabet.length)] as number)));
      const expected = [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
      assert.deepEqual(sortByBytes(names), expected);
    }
  });
});
