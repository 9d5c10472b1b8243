import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DOWN, PINNED, longLookupSuite } from './helpers/long-lookup.js';
import { call } from './helpers/ssh.js';

/*
 * An atomic upload stages its file (a hidden name no client can name) while
 * it looks whether its directory is still where its path says, rather than
 * after (one trip to the thread pool less per upload: session.ts,
 * stagedInPlace). Found moved, the upload is refused as before, and the
 * staged file must go with it. The lookup is made long as in
 * perm-moved-dir-read: a link in P leads 1,300 directories down and back up
 * to P, which stays pinned through it, while a second connection moves P
 * into /ro (list, download, rename, mkdir: no upload).
 */
describe('an upload through a long lookup whose directory was moved meanwhile creates nothing, staged or named', () => {
  const w = longLookupSuite('stager', '/ro', 'list,download,mkdir,rename');
  const p = PINNED;
  const down = DOWN;

  const upload = (path: string): Promise<string> =>
    call((cb) => w.a.writeFile(path, 'NEW', cb)).then(() => 'ok', (err: unknown) => `refused: ${String(err)}`);

  it('the rights are as configured: nothing can be uploaded into /ro', async () => {
    assert.match(await upload('/ro/a.txt'), /^refused/);
  });

  it('P moved into /ro while the upload to P/D/new.txt looks up its links: refused, and no file is left in P', async () => {
    // Made by the user (ssh2 sends the link's path second, as sluice takes it from a client that is not OpenSSH).
    await call((cb) => w.a.symlink(p, `${p}/${down}/L2`, cb));
    await call((cb) => w.a.symlink(`${p}/${down}/L2`, `${p}/D`, cb));
    assert.equal(readlinkSync(join(w.home, p, 'D')), `${down}/L2`);
    assert.equal(await upload(`${p}/D/first.txt`), 'ok', 'through the links, in place');
    assert.ok(existsSync(join(w.home, p, 'first.txt')));

    let pending = true;
    const uploading = upload(`${p}/D/new.txt`).finally(() => (pending = false));
    await sleep(15);
    await call((cb) => w.b.rename(p, '/ro/P', cb));
    const raced = pending;
    const got = await uploading;
    assert.ok(raced, 'the move landed while the upload was still looking up its links');
    assert.match(got, /^refused: .*moved meanwhile/);
    // The staged file went with the refusal: nothing under its hidden name, nothing under its own.
    assert.deepEqual(readdirSync(join(w.home, 'ro', 'P')).sort(), ['D', 'first.txt', 'x']);
  });
});
