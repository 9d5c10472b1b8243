import assert from 'node:assert/strict';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DOWN, PINNED, longLookupSuite } from './helpers/long-lookup.js';
import { call, statusOf } from './helpers/ssh.js';

/*
 * A lookup pins each directory it opens and keeps some open while it goes on
 * (the last 17, and one in every 64 on the way down); a link's `..` that
 * climbs back to one of them finds it where it is by then, not by its name.
 * Two links a user may make (each stored as the shortest relative text) lead
 * from P 1,300 directories down and back up to P/n: the lookup takes a while,
 * P (64 deep, kept open) stays pinned through it, and the download's rights
 * are checked on the path P had. Meanwhile a second connection moved P into
 * /inbox (list, upload, mkdir, rename: no download) and a file there onto
 * P/n (both allowed), and the download read it. Found by a review; red
 * before the fix.
 */
describe('a download through a long lookup whose directory was moved meanwhile reads nothing the rights where it is refuse', () => {
  const w = longLookupSuite('reader', '/inbox', 'list,upload,mkdir,rename');
  const p = PINNED;
  const down = DOWN;

  async function read(path: string): Promise<string> {
    return call<Buffer>((cb) => w.a.readFile(path, cb)).then((buf) => buf.toString(), (err: unknown) => `refused: ${String(err)}`);
  }

  it('the rights are as configured: a file in /inbox cannot be read nor moved out', async () => {
    writeFileSync(join(w.home, 'inbox/a.txt'), 'A');
    assert.match(await read('/inbox/a.txt'), /^refused/);
    assert.notEqual(await statusOf(call((cb) => w.a.rename('/inbox/a.txt', '/work/a.txt', cb))), 'ok');
  });

  it('P moved into /inbox and an inbox file onto P/n while the download of P/L looks up its links: nothing is read', async () => {
    writeFileSync(join(w.home, 'inbox/secret.txt'), 'SECRET');
    // Made by the user (ssh2 sends the link's path second, as sluice takes it from a client that is not OpenSSH).
    await call((cb) => w.a.symlink(`${p}/n`, `${p}/${down}/L2`, cb));
    await call((cb) => w.a.symlink(`${p}/${down}/L2`, `${p}/L`, cb));
    assert.equal(readlinkSync(join(w.home, p, 'L')), `${down}/L2`);
    assert.equal(readlinkSync(join(w.home, p, down, 'L2')), '../'.repeat(1300) + 'n');
    writeFileSync(join(w.home, p, 'n'), 'MINE');
    assert.equal(await read(`${p}/L`), 'MINE');
    await call((cb) => w.a.unlink(`${p}/n`, cb));

    let pending = true;
    const reading = read(`${p}/L`).finally(() => (pending = false));
    await sleep(15);
    await call((cb) => w.b.rename(p, '/inbox/P', cb));
    await call((cb) => w.b.rename('/inbox/secret.txt', '/inbox/P/n', cb));
    const raced = pending;
    const got = await reading;
    assert.ok(raced, 'both moves landed while the download was still looking up its links');
    assert.notEqual(got, 'SECRET', 'the download read a file of /inbox');
    assert.equal(readFileSync(join(w.home, 'inbox/P/n'), 'utf8'), 'SECRET');
  });
});
