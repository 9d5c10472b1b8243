import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, promises as fsp, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SluiceError } from '../src/session/errors.js';
import type { Session } from '../src/session/session.js';
import { World, readFile, writeFile } from './helpers/world.js';

/** Descriptors of this process that name something under `dir`. */
function openUnder(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target === dir || target.startsWith(dir + '/')) out.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/**
 * The directories of the last resolve stay open for the next one: a kept
 * directory is used again only while its name still leads to it, so every
 * change made between two operations (by anyone: another session, a shell)
 * is seen as the walk afresh would see it.
 */
describe('storage: directories kept between operations', () => {
  let world: World;
  let s: Session;
  let home: string;
  let outside: string;

  before(async () => {
    world = await World.open();
    await world.addUser('alice', { permissions: ['list', 'download', 'upload', 'overwrite', 'delete', 'rename', 'mkdir', 'rmdir'] });
    home = world.home('alice');
    outside = join(world.dir, 'outside');
    mkdirSync(outside);
    s = await world.session('alice');
  });
  after(() => world.close());

  // Found by an adversarial review: a READDIR still reading when its channel closed logged ERR_DIR_CLOSED as a failure.
  it('a directory closed while it is read ends its listing; it is no failure', async () => {
    writeFileSync(join(home, 'listed.txt'), 'x');
    const storage = await world.services.sessionDeps.storage(home);
    const root = await storage.resolve('/', false);
    try {
      const dir = await root.openDir();
      await dir.close();
      assert.deepEqual(await dir.names(100), []);
    } finally {
      // Left open, the home's handle stayed until a garbage collection closed it, and a later case saw it.
      await root.close();
      storage.close();
    }
  });

  it('a directory renamed away and made anew: the next upload lands in the new one', async () => {
    mkdirSync(join(home, 'site/css'), { recursive: true });
    await writeFile(s, 'site/css/a.css', 'A');
    renameSync(join(home, 'site'), join(home, 'site-old'));
    mkdirSync(join(home, 'site/css'), { recursive: true });
    await writeFile(s, 'site/css/b.css', 'B');
    assert.equal(readFileSync(join(home, 'site/css/b.css'), 'utf8'), 'B');
    assert.ok(!existsSync(join(home, 'site-old/css/b.css')), 'not written into the renamed directory');
    // Only the deeper one swapped: the kept parent is still good, the child is not.
    renameSync(join(home, 'site/css'), join(home, 'site/css-old'));
    mkdirSync(join(home, 'site/css'));
    await writeFile(s, 'site/css/c.css', 'C');
    assert.equal(readFileSync(join(home, 'site/css/c.css'), 'utf8'), 'C');
    assert.deepEqual(readdirSync(join(home, 'site/css-old')), ['b.css']);
  });

  it('a kept directory removed: the next operation fails as for a missing directory', async () => {
    mkdirSync(join(home, 'gone'));
    await writeFile(s, 'gone/x', 'x');
    rmSync(join(home, 'gone'), { recursive: true });
    await assert.rejects(writeFile(s, 'gone/y', 'y'), (e: unknown) => e instanceof SluiceError && e.kind === 'not-found');
    await assert.rejects(readFile(s, 'gone/x'), (e: unknown) => e instanceof SluiceError && e.kind === 'not-found');
  });

  it('a kept directory swapped for a link to the outside: refused, nothing written outside', async () => {
    mkdirSync(join(home, 'box/inner'), { recursive: true });
    await writeFile(s, 'box/inner/one', '1');
    renameSync(join(home, 'box'), join(home, 'box-moved'));
    symlinkSync(outside, join(home, 'box'));
    await assert.rejects(writeFile(s, 'box/inner/two', '2'), (e: unknown) => e instanceof SluiceError && e.kind === 'permission-denied');
    // The deeper one swapped while its parent stays.
    rmSync(join(home, 'box'));
    renameSync(join(home, 'box-moved'), join(home, 'box'));
    await writeFile(s, 'box/inner/three', '3');
    renameSync(join(home, 'box/inner'), join(home, 'box/inner-moved'));
    symlinkSync(outside, join(home, 'box/inner'));
    await assert.rejects(writeFile(s, 'box/inner/four', '4'), (e: unknown) => e instanceof SluiceError && e.kind === 'permission-denied');
    await assert.rejects(readFile(s, 'box/inner/three'), (e: unknown) => e instanceof SluiceError);
    assert.deepEqual(readdirSync(outside), []);
    assert.deepEqual(readdirSync(join(home, 'box/inner-moved')).sort(), ['one', 'three']);
  });

  it('paths that share only part of the kept chain, and paths through `..`, reach the right files', async () => {
    mkdirSync(join(home, 'p/q/r'), { recursive: true });
    mkdirSync(join(home, 'p/z'), { recursive: true });
    writeFileSync(join(home, 'p/q/r/f'), 'R');
    writeFileSync(join(home, 'p/z/f'), 'Z');
    writeFileSync(join(home, 'p/q/f'), 'Q');
    assert.equal(await readFile(s, 'p/q/r/f'), 'R');
    assert.equal(await readFile(s, 'p/z/f'), 'Z');
    assert.equal(await readFile(s, 'p/q/r/../f'), 'Q');
    assert.equal(await readFile(s, 'p/q/f'), 'Q');
    await writeFile(s, 'p/q/r/g', 'G');
    assert.equal(readFileSync(join(home, 'p/q/r/g'), 'utf8'), 'G');
  });

  it('many operations at once across directories (the kept chain replaced under them) each reach their own file', async () => {
    const dirs = ['c/0', 'c/1/x', 'c/2', 'c/1/y', 'c/3/z/w'];
    for (const d of dirs) mkdirSync(join(home, d), { recursive: true });
    const files = Array.from({ length: 200 }, (_, i) => ({ path: `${dirs[i % dirs.length]}/f${i}`, text: `file ${i} `.repeat(i + 1) }));
    await Promise.all(files.map((f) => writeFile(s, f.path, f.text)));
    for (const f of files) assert.equal(readFileSync(join(home, f.path), 'utf8'), f.text, f.path);
    const back = await Promise.all(files.map((f) => readFile(s, f.path)));
    back.forEach((text, i) => assert.equal(text, files[i]?.text));
  });

  it('a kept directory whose read bit is taken refuses as a fresh walk does', async () => {
    mkdirSync(join(home, 'r/s'), { recursive: true });
    writeFileSync(join(home, 'r/s/f'), 'R');
    const fresh = await world.session('alice');
    chmodSync(join(home, 'r'), 0o300);
    const cold = await readFile(fresh, 'r/s/f').then(() => 'ok', (e: SluiceError) => e.kind);
    chmodSync(join(home, 'r'), 0o755);
    assert.equal(await readFile(s, 'r/s/f'), 'R');
    chmodSync(join(home, 'r'), 0o300);
    const warm = await readFile(s, 'r/s/f').then(() => 'ok', (e: SluiceError) => e.kind);
    chmodSync(join(home, 'r'), 0o755);
    assert.equal(cold, 'permission-denied');
    assert.equal(warm, cold);
  });

  it('a download in a kept directory opens the file in the same step as the check, and keeps nothing a failed check opened', async () => {
    mkdirSync(join(home, 'dl'));
    writeFileSync(join(home, 'dl/f'), 'A');
    assert.equal(await readFile(s, 'dl/f'), 'A');
    // The file is opened where the check looks, not looked up first: one trip to the disk fewer.
    const lstat = fsp.lstat;
    const looked: string[] = [];
    fsp.lstat = ((path: string, ...rest: []) => (looked.push(String(path)), lstat(path, ...rest))) as typeof fsp.lstat;
    try {
      assert.equal(await readFile(s, 'dl/f'), 'A');
    } finally {
      fsp.lstat = lstat;
    }
    assert.deepEqual(looked.filter((p) => p.endsWith('/f')), [], `looked up: ${looked.join(', ')}`);
    // Renamed away and made anew: the file opened in the old directory is not the one read, and is closed.
    renameSync(join(home, 'dl'), join(home, 'dl-old'));
    mkdirSync(join(home, 'dl'));
    writeFileSync(join(home, 'dl/f'), 'B');
    assert.equal(await readFile(s, 'dl/f'), 'B');
    // Swapped for a link to the outside, where a file of that name waits: refused, nothing read or left open there.
    renameSync(join(home, 'dl'), join(home, 'dl-new'));
    symlinkSync(outside, join(home, 'dl'));
    writeFileSync(join(outside, 'f'), 'OUT');
    try {
      await assert.rejects(readFile(s, 'dl/f'), (e: unknown) => e instanceof SluiceError && e.kind === 'permission-denied');
    } finally {
      rmSync(join(outside, 'f'));
    }
    await new Promise((r) => setImmediate(r));
    // (The kept directories themselves may stay open until the chain is replaced; no file does.)
    const files = [...openUnder(join(home, 'dl-old')), ...openUnder(join(home, 'dl-new')), ...openUnder(outside)].filter((t) => t.endsWith('/f'));
    assert.deepEqual(files, []);
  });

  it('a session gone lets go of every directory it kept, at once: no pause (HOME_LINGER_MS) for a closed session', async () => {
    // A home of its own: the sessions the cases before left open keep alice's until their pause ends.
    await world.addUser('ada', { permissions: ['list', 'download', 'upload'] });
    const own = world.home('ada');
    mkdirSync(join(own, 'deep/a/b'), { recursive: true });
    const [t, u] = await Promise.all([world.session('ada'), world.session('ada')]);
    await writeFile(t, 'deep/a/b/f', 'x');
    assert.equal(await readFile(u, 'deep/a/b/f'), 'x');
    await t.close();
    await u.close();
    // The handles' closes are not waited for: a turn or two of the thread pool, far below the 2 s pause.
    for (const end = Date.now() + 500; openUnder(own).length > 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(openUnder(own), []);
  });
});

/**
 * A walk keeps the last few directories open, not every one it passes: a
 * path 2,000 directories deep held 2,000 descriptors while one request
 * lasted, and ten sessions exhausted the process's limit for everyone.
 */
describe('storage: deep paths', () => {
  let world: World;
  let s: Session;
  let home: string;
  const depth = 300;
  const deep = Array.from({ length: depth }, () => 'd').join('/');

  before(async () => {
    world = await World.open();
    await world.addUser('dora', { permissions: ['list', 'download', 'upload', 'symlink'] });
    home = world.home('dora');
    mkdirSync(join(home, deep), { recursive: true });
    writeFileSync(join(home, deep, 'f'), 'deep file');
    s = await world.session('dora');
  });
  after(() => world.close());

  /** The most descriptors under the home open at once while `work` runs. */
  async function peakDuring(work: () => Promise<unknown>): Promise<number> {
    let peak = 0;
    let running = true;
    const sample = (): void => {
      peak = Math.max(peak, openUnder(home).length);
      if (running) setImmediate(sample);
    };
    sample();
    try {
      await work();
    } finally {
      running = false;
    }
    return peak;
  }

  it('a file 300 directories deep is read with at most a window of them open', async () => {
    const peak = await peakDuring(async () => {
      for (let i = 0; i < 3; i++) assert.equal(await readFile(s, `${deep}/f`), 'deep file');
    });
    assert.ok(peak >= 10, `the sampler saw the walk (${peak})`);
    assert.ok(peak <= 24, `at most ${peak} descriptors at once, not one per directory`);
  });

  it('a link whose text climbs past the open window leads where it says', async () => {
    // Made through the session: stored relative, 250 levels of `..` from where it lies.
    const near = Array.from({ length: 50 }, () => 'd').join('/');
    writeFileSync(join(home, near, 'g'), 'near the top');
    await s.symlink(`/${near}`, `/${deep}/up`);
    assert.equal(readlinkSync(join(home, deep, 'up')).split('/').filter((x) => x === '..').length, 250);
    assert.equal(await readFile(s, `${deep}/up/g`), 'near the top');
    assert.equal((await s.stat(`/${deep}/up`)).type, 'dir');
    const peak = await peakDuring(() => readFile(s, `${deep}/up/g`));
    assert.ok(peak <= 24, `at most ${peak} descriptors at once`);
  });

  it('links that climb past the window and lead to each other cost a bounded number of opens, not the whole path each time', async () => {
    // From 300 deep, two branches 18 deeper, each with a link to the other's: the walk follows 40 links
    // before it gives up, and each climbs 19 directories, past the open window.
    const branch = Array.from({ length: 18 }, () => 'x').join('/');
    const [a, b] = [`/${deep}/a/${branch}`, `/${deep}/b/${branch}`];
    mkdirSync(join(home, a), { recursive: true });
    mkdirSync(join(home, b), { recursive: true });
    await s.symlink(`${b}/L`, `${a}/L`);
    await s.symlink(`${a}/L`, `${b}/L`);
    const real = fsp.open;
    let opens = 0;
    // Counted, not replaced: every open still happens.
    fsp.open = ((...args: Parameters<typeof fsp.open>) => {
      opens++;
      return real(...args);
    }) as typeof fsp.open;
    try {
      await assert.rejects(s.stat(`${a}/L/f`), (e: unknown) => e instanceof SluiceError && e.kind === 'invalid-path');
    } finally {
      fsp.open = real;
    }
    // Reopened from home each time, about 40 x 320; from the nearest directory kept open, at most 40 x 64 more than the links' own.
    assert.ok(opens < 5000, `${opens} opens for one stat`);
  });
});
