import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SluiceError } from '../src/session/errors.js';
import type { Session } from '../src/session/session.js';
import { World, collect, readFile, writeFile } from './helpers/world.js';

/**
 * Every hostile path must stay inside alice's home. Outside the home lie a
 * secret file and a sibling home; links to both are planted inside.
 */
describe('chroot: hostile paths stay inside the home', () => {
  let world: World;
  let s: Session;
  let home: string;
  let outside: string;

  before(async () => {
    world = await World.open();
    await world.addUser('alice', { permissions: ['list', 'download', 'upload', 'overwrite', 'delete', 'rename', 'mkdir', 'rmdir', 'chmod', 'chtimes', 'symlink'] });
    await world.addUser('bob');
    home = world.home('alice');
    outside = join(world.dir, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret.txt'), 'SECRET');
    writeFileSync(join(world.home('bob'), 'bob.txt'), 'BOB');
    writeFileSync(join(home, 'inside.txt'), 'INSIDE');
    mkdirSync(join(home, 'sub/deeper'), { recursive: true });
    writeFileSync(join(home, 'sub/deeper/f.txt'), 'DEEP');
    // Planted links: the kind an operator's script or a restored backup leaves behind.
    symlinkSync(outside, join(home, 'abs-out'));
    symlinkSync('../../../outside', join(home, 'rel-out'));
    symlinkSync(join(outside, 'secret.txt'), join(home, 'secret-link'));
    symlinkSync('../bob', join(home, 'to-bob'));
    symlinkSync('/etc', join(home, 'etc-link'));
    symlinkSync('/', join(home, 'root-link'));
    symlinkSync('sub/deeper', join(home, 'in-rel'));
    symlinkSync(join(home, 'sub'), join(home, 'in-abs'));
    symlinkSync('loop-b', join(home, 'loop-a'));
    symlinkSync('loop-a', join(home, 'loop-b'));
    symlinkSync(join(outside, 'new-file.txt'), join(home, 'dangling-out'));
    symlinkSync('../../..', join(home, 'sub/deeper/up3'));
    s = await world.session('alice');
  });
  after(() => world.close());

  const outsideUntouched = () => {
    assert.equal(readFileSync(join(outside, 'secret.txt'), 'utf8'), 'SECRET');
    assert.ok(!existsSync(join(outside, 'new-file.txt')), 'nothing created outside');
    assert.ok(!existsSync(join(outside, 'x')), 'nothing created outside');
  };

  const refused = (kinds: string[] = ['permission-denied', 'not-found', 'invalid-path', 'not-a-directory']) =>
    (e: unknown) => e instanceof SluiceError && kinds.includes(e.kind) && !e.message.includes(world.dir);

  // Traversal and encoding tricks fold onto paths inside the home.
  const folded: [string, string][] = [
    ['../../../../etc/passwd', '/etc/passwd'],
    ['/../../secret.txt', '/secret.txt'],
    ['..\\..\\..\\outside\\secret.txt', '/outside/secret.txt'],
    ['sub/../../../outside/secret.txt', '/outside/secret.txt'],
    ['//..//..//outside//secret.txt', '/outside/secret.txt'],
    ['./././../outside/secret.txt', '/outside/secret.txt'],
    ['sub/deeper/../../../../bob/bob.txt', '/bob/bob.txt'],
    ['%2e%2e/%2e%2e/outside/secret.txt', '/%2e%2e/%2e%2e/outside/secret.txt'],
    ['..%2f..%2foutside%2fsecret.txt', '/..%2f..%2foutside%2fsecret.txt'],
    ['....//....//outside/secret.txt', '/..../..../outside/secret.txt'],
  ];
  for (const [input, virtual] of folded) {
    it(`folds ${JSON.stringify(input)} to ${virtual} and reads nothing outside`, async () => {
      assert.equal(s.resolve(input), virtual);
      await assert.rejects(readFile(s, input), refused(['not-found']));
    });
  }

  // Links that lead out are refused for every kind of use.
  const outLinks = ['abs-out/secret.txt', 'rel-out/secret.txt', 'secret-link', 'to-bob/bob.txt', 'etc-link/passwd',
    'root-link/etc/passwd', 'sub/deeper/up3/outside/secret.txt'];
  for (const p of outLinks) {
    it(`refuses reading through ${p}`, async () => {
      await assert.rejects(readFile(s, p), refused(['permission-denied']));
    });
    it(`refuses stat and list through ${p}`, async () => {
      await assert.rejects(s.stat(p), refused(['permission-denied']));
      await assert.rejects(collect(s.list(p.split('/').slice(0, -1).join('/') || p)), refused(['permission-denied', 'not-a-directory']));
    });
  }

  it('refuses writing through links that lead out (existing dir and dangling file)', async () => {
    await assert.rejects(writeFile(s, 'abs-out/x', 'pwn'), refused(['permission-denied']));
    await assert.rejects(writeFile(s, 'rel-out/x', 'pwn'), refused(['permission-denied']));
    await assert.rejects(writeFile(s, 'dangling-out', 'pwn'), refused(['permission-denied']));
    await assert.rejects(writeFile(s, 'secret-link', 'pwn'), refused(['permission-denied']));
    outsideUntouched();
  });

  it('refuses mkdir, remove, rename, chmod through links that lead out', async () => {
    await assert.rejects(s.mkdir('abs-out/x'), refused(['permission-denied']));
    await assert.rejects(s.remove('abs-out/secret.txt'), refused(['permission-denied']));
    await assert.rejects(s.rename('inside.txt', 'rel-out/x', 'replace'), refused(['permission-denied']));
    await assert.rejects(s.rename('abs-out/secret.txt', 'stolen.txt', 'replace'), refused(['permission-denied']));
    await assert.rejects(s.chmod('secret-link', 0o777), refused(['permission-denied']));
    await assert.rejects(s.setTimes('secret-link', new Date(0)), refused(['permission-denied']));
    outsideUntouched();
  });

  it('acts on a planted link itself, not its target, for remove', async () => {
    symlinkSync(join(outside, 'secret.txt'), join(home, 'victim-link'));
    await s.remove('victim-link');
    assert.ok(!existsSync(join(home, 'victim-link')));
    outsideUntouched();
  });

  it('refuses symlink loops with a clear error', async () => {
    await assert.rejects(readFile(s, 'loop-a'), refused(['invalid-path']));
  });

  it('follows links that stay inside', async () => {
    assert.equal(await readFile(s, 'in-rel/f.txt'), 'DEEP');
    assert.equal(await readFile(s, 'in-abs/deeper/f.txt'), 'DEEP');
    assert.equal(await s.realpath('in-rel/f.txt'), '/sub/deeper/f.txt');
  });

  it('refuses creating a link whose target climbs above the home', async () => {
    await assert.rejects(s.symlink('../../outside', 'mine'), refused(['permission-denied']));
    await assert.rejects(s.symlink('sub/../../../../etc', 'mine'), refused(['permission-denied']));
    assert.ok(!existsSync(join(home, 'mine')));
  });

  it('stores an absolute link target as a path inside the home', async () => {
    await s.symlink('/etc/passwd', 'abs-mine');
    await assert.rejects(readFile(s, 'abs-mine'), refused(['not-found']));
    writeFileSync(join(home, 'target.txt'), 'T');
    await s.symlink('/target.txt', 'sub/t-link');
    assert.equal(await readFile(s, 'sub/t-link'), 'T');
    assert.equal(await s.readlink('sub/t-link'), '../target.txt');
  });

  it('a client-made link moved deeper cannot climb out', async () => {
    await s.symlink('..', 'sub/up1');
    await s.rename('sub/up1', 'sub/deeper/up1', 'replace');
    // sub/deeper/up1 -> .. -> /sub : still inside; moved to the top it would point above the home.
    await s.rename('sub/deeper/up1', 'up1', 'replace');
    await assert.rejects(collect(s.list('up1')), refused(['permission-denied']));
  });

  it('never shows a real path in readlink of a planted absolute link', async () => {
    await assert.rejects(s.readlink('abs-out'), refused(['permission-denied']));
    assert.equal(await s.readlink('in-abs'), '/sub');
  });

  it('refuses hard links to files outside (only paths inside can be named)', async () => {
    await assert.rejects(s.hardlink('secret-link', 'hard'), refused(['permission-denied']));
    await assert.rejects(s.hardlink('abs-out/secret.txt', 'hard'), refused(['permission-denied']));
  });

  it('holds when a directory is swapped for an outside link between check and use', async () => {
    // A writer is opened in /swap; then /swap is replaced by a link to the outside.
    mkdirSync(join(home, 'swap'));
    const up = await s.openWrite('swap/file.txt');
    renameSync(join(home, 'swap'), join(home, 'swap-moved'));
    symlinkSync(outside, join(home, 'swap'));
    await up.write(Buffer.from('data'));
    await up.close();
    // The upload landed in the directory that was checked, wherever it now is.
    assert.equal(readFileSync(join(home, 'swap-moved/file.txt'), 'utf8'), 'data');
    assert.ok(!existsSync(join(outside, 'file.txt')));
    // And a new operation through the swapped name is refused.
    await assert.rejects(writeFile(s, 'swap/again.txt', 'x'), refused(['permission-denied']));
    outsideUntouched();
  });

  it('holds under a race: a path component flipping between dir and outside link', async () => {
    mkdirSync(join(home, 'flip'));
    let stop = false;
    const flipper = (async () => {
      while (!stop) {
        try {
          rmSync(join(home, 'flip'), { recursive: true, force: true });
          symlinkSync(outside, join(home, 'flip'));
          await new Promise((r) => setImmediate(r));
          rmSync(join(home, 'flip'), { force: true });
          mkdirSync(join(home, 'flip'));
          await new Promise((r) => setImmediate(r));
        } catch {
          // the race is the point
        }
      }
    })();
    for (let i = 0; i < 200; i++) {
      await writeFile(s, `flip/f${i}.txt`, 'x').catch(() => undefined);
      await s.remove('flip/secret.txt').catch(() => undefined);
    }
    stop = true;
    await flipper;
    outsideUntouched();
    assert.deepEqual(readFileSync(join(outside, 'secret.txt'), 'utf8'), 'SECRET');
    const { readdirSync } = await import('node:fs');
    assert.deepEqual(readdirSync(outside).sort(), ['secret.txt']);
  });

  it('the home itself cannot be removed or renamed', async () => {
    await assert.rejects(s.rmdir('/'), refused(['permission-denied']));
    await assert.rejects(s.rename('/', '/x', 'replace'), refused(['permission-denied']));
    await assert.rejects(s.remove('..'), refused(['permission-denied', 'is-a-directory']));
  });

  it('errors never carry a real server path', async () => {
    for (const p of ['nope', 'abs-out/secret.txt', 'loop-a', 'a\0b', 'x'.repeat(300)]) {
      try {
        await readFile(s, p);
        assert.fail('should refuse');
      } catch (e) {
        assert.ok(e instanceof SluiceError);
        assert.ok(!e.message.includes('/tmp') && !e.message.includes(world.dir), e.message);
      }
    }
  });

  it('audits refusals that lead outside', async () => {
    const lines = await world.auditLines();
    assert.ok(lines.some((l) => l.event === 'denied' && l.reason === 'outside-home' && l.user === 'alice'));
  });
});
