import assert from 'node:assert/strict';
import { promises as fsp, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { World } from './helpers/world.js';

/*
 * Issue #13: a small file's transfer is bounded by the trips to the thread
 * pool it waits for in a row. These are the ones it no longer waits for.
 */
describe('what the end of a transfer waits for', () => {
  let world: World;
  before(async () => {
    world = await World.open();
    await world.addUser('w');
  });
  after(() => world.close());

  it("a download's end (SFTP CLOSE's answer) does not wait for its descriptor's close", async () => {
    writeFileSync(join(world.home('w'), 'f'), 'data');
    const s = await world.session('w');
    const open = fsp.open;
    const held: (() => void)[] = [];
    // The close of the downloaded file hangs until the test lets it go.
    fsp.open = (async (...args: Parameters<typeof open>) => {
      const fh = await open(...args);
      if (String(args[0]).endsWith('/f')) {
        const close = fh.close.bind(fh);
        fh.close = () => new Promise<void>((resolve, reject) => held.push(() => void close().then(resolve, reject)));
      }
      return fh;
    }) as typeof open;
    let ended: string;
    try {
      const down = await s.openRead('f');
      assert.equal((await down.read(0, 100)).toString(), 'data');
      ended = await Promise.race([down.close().then(() => 'ended'), new Promise<string>((r) => setTimeout(() => r('waiting for the close'), 1000))]);
    } finally {
      fsp.open = open;
      for (const go of held) go();
    }
    assert.equal(ended, 'ended');
    assert.equal(held.length, 1, 'the descriptor is closed all the same');
    assert.equal((await world.auditLines()).findLast((l) => l.event === 'download')?.result, 'ok');
  });

  it("a download read ahead (FTP RETR, while its data connection readies) streams a small file with no read left to wait for", async () => {
    const text = 'small file '.repeat(300);
    writeFileSync(join(world.home('w'), 'g'), text);
    const s = await world.session('w');
    const down = await s.openRead('g');
    down.readAhead();
    // The read ahead has landed; from here on, count what the stream asks the disk.
    await new Promise((r) => setTimeout(r, 50));
    const probe = await fsp.open(join(world.home('w'), 'g'));
    const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => unknown };
    await probe.close();
    const read = proto.read;
    let reads = 0;
    proto.read = function (this: unknown, ...args: unknown[]) {
      reads++;
      return read.apply(this, args);
    };
    let got: string;
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of down.readable()) chunks.push(chunk as Buffer);
      got = Buffer.concat(chunks).toString();
    } finally {
      proto.read = read;
    }
    await down.close();
    assert.equal(got, text);
    assert.equal(reads, 0);
    assert.equal((await world.auditLines()).findLast((l) => l.event === 'download')?.bytes, text.length);
  });
});
