import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openLocalStorage } from '../src/session/storage/local.js';
import { ServerPlaces } from '../src/session/storage/server-places.js';
import { WalkTurns } from '../src/session/storage/walk-turns.js';
import { World } from './helpers/world.js';

/*
 * A streamed read of a file (FTP RETR, a scan, a quarantine copy) has the
 * next chunk's read under way while its consumer uses the one it was handed.
 * A download's consumer (the SHA-256, TLS, the socket's write) runs in the
 * same turn as the chunk is pushed; when the stream asked for the next chunk
 * only after that, the event loop slept through every read, a third of the
 * time of a large download measured with curl. One read ahead, no more: the
 * memory of a stream stays a chunk or two whatever the file or the client.
 */

describe('storage: a streamed read reads the next chunk while the last is used', () => {
  it('one read under way whenever a chunk is handed over, never two, and the bytes in order', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-read-ahead-'));
    const home = join(dir, 'home');
    mkdirSync(home);
    // Several chunks (256 KiB) and a part of one; read from an odd offset to an odd end.
    const data = randomBytes(5 * 256 * 1024 + 12345);
    writeFileSync(join(home, 'big'), data);
    const start = 1001;
    const end = data.length - 777;

    // Reads of every FileHandle in this process, counted while under way.
    const probe = await open(join(home, 'big'));
    const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<unknown> };
    await probe.close();
    const read = proto.read;
    let underWay = 0;
    let most = 0;
    proto.read = function (this: unknown, ...args: unknown[]) {
      most = Math.max(most, ++underWay);
      return read.apply(this, args).finally(() => underWay--);
    };
    const storage = await openLocalStorage(home, new ServerPlaces(join(dir, 'no-data'), []), new WalkTurns(1));
    try {
      const loc = await storage.resolve('/big', false);
      const file = await loc.openRead();
      const chunks: Buffer[] = [];
      const aheadAtHandOver: number[] = [];
      await new Promise<void>((resolve, reject) => {
        file
          .readStream(start, end)
          .on('data', (chunk: Buffer) => {
            aheadAtHandOver.push(underWay);
            chunks.push(chunk);
          })
          .on('end', resolve)
          .on('error', reject);
      });
      await file.close();
      await loc.close();
      assert.ok(Buffer.concat(chunks).equals(data.subarray(start, end)), 'the bytes from start to end, in order');
      assert.ok(chunks.length >= 5, `several chunks (${chunks.length})`);
      // The last chunk reaches `end`: nothing is left to read ahead.
      assert.deepEqual(aheadAtHandOver, [...chunks.map(() => 1).slice(1), 0], 'the next read is under way as each chunk but the last is handed over');
      assert.equal(most, 1, 'never more than one read at a time');
    } finally {
      proto.read = read;
      storage.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a download's stream given up (ABOR, a data connection gone)", () => {
  let world: World;
  before(async () => {
    world = await World.open();
    await world.addUser('r');
  });
  after(() => world.close());

  it('reads nothing more of the file once destroyed', async () => {
    // Found by a review of the read ahead: the download's counting stage was destroyed but not the file's stream
    // under it, which went on to read the chunk after the one under way, for no one.
    writeFileSync(join(world.home('r'), 'big'), randomBytes(8 * 256 * 1024));
    const s = await world.session('r');
    const down = await s.openRead('big');
    const probe = await open(join(world.home('r'), 'big'));
    const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<unknown> };
    await probe.close();
    const read = proto.read;
    let given = false;
    let readsAfter = 0;
    proto.read = function (this: unknown, ...args: unknown[]) {
      if (given) readsAfter++;
      return read.apply(this, args);
    };
    try {
      const stream = down.readable();
      await new Promise<void>((resolve) => {
        stream.once('data', () => {
          // The next chunk's read is under way: it lands after this, and must start no other.
          stream.destroy();
          given = true;
          resolve();
        });
      });
      await new Promise((r) => setTimeout(r, 200));
      await down.abort('given up');
    } finally {
      proto.read = read;
    }
    assert.equal(readsAfter, 0, 'no read started after the stream was destroyed');
  });
});
