import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SluiceError } from '../src/session/errors.js';
import {
  PERMISSIONS,
  allows,
  carriesOverride,
  narrows,
  parsePermissions,
  permissionsAt,
  listOfRules,
  rulesOfList,
  sameRules,
  seesNames,
  takesAnyAway,
  type Permission,
  type PermissionRules,
} from '../src/session/permissions.js';
import type { Session } from '../src/session/session.js';
import { World, collect, readFile, writeFile } from './helpers/world.js';

const denied = (e: unknown) => e instanceof SluiceError && e.kind === 'permission-denied';

describe('permission rules (pure)', () => {
  const rules = {
    root: new Set<Permission>(['list', 'download']),
    dirs: new Map<string, Set<Permission>>([
      ['/in', new Set<Permission>(['upload'])],
      ['/in/open', new Set<Permission>(['upload', 'list'])],
    ]),
  };
  it('the closest configured ancestor wins and is inherited', () => {
    assert.deepEqual([...permissionsAt(rules, '/')], ['list', 'download']);
    assert.deepEqual([...permissionsAt(rules, '/other/deep')], ['list', 'download']);
    assert.deepEqual([...permissionsAt(rules, '/in')], ['upload']);
    assert.deepEqual([...permissionsAt(rules, '/in/a/b')], ['upload']);
    assert.deepEqual([...permissionsAt(rules, '/in/open/x')], ['upload', 'list']);
    assert.equal(allows(rules, 'list', '/inbox'), true, '/inbox is not under /in');
  });
  it('names can be learnt where list or download is granted', () => {
    const r = { ...rules, dirs: new Map([...rules.dirs, ['/dl', new Set<Permission>(['download'])]]) };
    const table: [string, boolean][] = [['/', true], ['/in', false], ['/in/deep', false], ['/in/open', true], ['/dl/x', true]];
    for (const [dir, sees] of table) assert.equal(seesNames(r, dir), sees, dir);
  });
  it('configured directories and their ancestors carry an override; the rest do not', () => {
    const table: [string, boolean][] = [['/', true], ['/in', true], ['/in/open', true], ['/in/a', false], ['/in/open/x', false], ['/inbox', false], ['/other', false]];
    for (const [path, carries] of table) assert.equal(carriesOverride(rules, path), carries, path);
  });
  it('a move narrows when every right at the destination is held at the source', () => {
    const table: [string, string, boolean][] = [
      ['/', '/other', true],
      ['/in', '/in/a', true],
      ['/', '/in', false], // upload is not held at /
      ['/in', '/', false], // list and download would be gained
      ['/in', '/in/open', false], // list would be gained
      ['/in/open', '/in', true],
    ];
    for (const [from, to, ok] of table) assert.equal(narrows(rules, from, to), ok, `${from} -> ${to}`);
  });
  it('a change takes a permission away when any directory loses one, wherever the overrides of either side stand', () => {
    const withDirs = (root: Permission[], dirs: [string, Permission[]][]): PermissionRules => ({
      root: new Set(root),
      dirs: new Map(dirs.map(([d, ps]) => [d, new Set(ps)])),
    });
    const table: [string, PermissionRules, boolean][] = [
      ['the same', rules, false],
      ['more at /', withDirs(['list', 'download', 'upload'], [['/in', ['upload']], ['/in/open', ['upload', 'list']]]), false],
      ['less at /', withDirs(['list'], [['/in', ['upload']], ['/in/open', ['upload', 'list']]]), true],
      ['an override dropped: /in/open falls back to /in, without list', withDirs(['list', 'download'], [['/in', ['upload']]]), true],
      ['an override dropped: /in falls back to /, without upload', withDirs(['list', 'download'], [['/in/open', ['upload', 'list']]]), true],
      ['a new override below, giving less', withDirs(['list', 'download'], [...rules.dirs].map(([d, ps]) => [d, [...ps]] as [string, Permission[]]).concat([['/pub', ['list']]])), true],
      ['a new override below, giving the same', withDirs(['list', 'download'], [...rules.dirs].map(([d, ps]) => [d, [...ps]] as [string, Permission[]]).concat([['/pub', ['list', 'download']]])), false],
    ];
    for (const [what, after, takes] of table) assert.equal(takesAnyAway(rules, after), takes, what);
    assert.equal(takesAnyAway(withDirs([], []), rules), false, 'from nothing, nothing is taken');
  });
  it('rules are the same only with the same overrides, in any order', () => {
    const dirs = (...d: [string, Permission[]][]) => new Map(d.map(([dir, ps]) => [dir, new Set(ps)]));
    const table: [string, PermissionRules, boolean][] = [
      ['a copy, sets in another order', { root: new Set<Permission>(['download', 'list']), dirs: dirs(['/in/open', ['list', 'upload']], ['/in', ['upload']]) }, true],
      ['a permission more at the home', { root: new Set<Permission>(['list', 'download', 'upload']), dirs: rules.dirs }, false],
      ['a permission less in an override', { root: rules.root, dirs: dirs(['/in', ['upload']], ['/in/open', ['list']]) }, false],
      ['an override more, giving what it inherits', { root: rules.root, dirs: dirs(['/in', ['upload']], ['/in/open', ['upload', 'list']], ['/in/x', ['upload']]) }, false],
      ['an override fewer', { root: rules.root, dirs: dirs(['/in', ['upload']]) }, false],
      ['the same sets under another directory', { root: rules.root, dirs: dirs(['/in', ['upload']], ['/in/shut', ['upload', 'list']]) }, false],
    ];
    for (const [what, other, same] of table) {
      assert.equal(sameRules(rules, other), same, what);
      assert.equal(sameRules(other, rules), same, `${what}, the other way round`);
    }
  });
  it('rules travel as plain lists and come back the same', () => {
    const travelled = rulesOfList(JSON.parse(JSON.stringify(listOfRules(rules))) as ReturnType<typeof listOfRules>);
    assert.deepEqual(travelled, rules);
    assert.equal(takesAnyAway(rules, travelled) || takesAnyAway(travelled, rules), false);
  });
  it('parses lists, all and none, and names an unknown word', () => {
    assert.deepEqual(parsePermissions('all'), [...PERMISSIONS]);
    assert.deepEqual(parsePermissions('none'), []);
    assert.deepEqual(parsePermissions('list, upload'), ['list', 'upload']);
    assert.throws(() => parsePermissions('list,fly'), /unknown permission "fly"/);
  });
});

/** Each permission: one user that has only it refused, one that has all allowed. */
describe('every permission allows and refuses through the session', () => {
  let world: World;
  before(async () => {
    world = await World.open();
  });
  after(() => world.close());

  async function userWith(perms: Permission[]): Promise<{ s: Session; home: string }> {
    const name = `u${Math.random().toString(36).slice(2, 10)}`;
    await world.addUser(name, { permissions: perms });
    const home = world.home(name);
    writeFileSync(join(home, 'file.txt'), 'hello');
    mkdirSync(join(home, 'dir'));
    mkdirSync(join(home, 'empty'));
    return { s: await world.session(name), home };
  }

  const ops: Record<Permission, (s: Session) => Promise<unknown>> = {
    list: (s) => collect(s.list('/')),
    download: (s) => readFile(s, 'file.txt'),
    upload: (s) => writeFile(s, 'new.txt', 'new'),
    overwrite: (s) => writeFile(s, 'file.txt', 'replaced'),
    delete: (s) => s.remove('file.txt'),
    rename: (s) => s.rename('file.txt', 'renamed.txt', 'replace'),
    mkdir: (s) => s.mkdir('made'),
    rmdir: (s) => s.rmdir('empty'),
    chmod: (s) => s.chmod('file.txt', 0o600),
    chtimes: (s) => s.setTimes('file.txt', new Date('2020-01-01T00:00:00Z')),
    symlink: (s) => s.symlink('file.txt', 'link'),
  };

  for (const perm of PERMISSIONS) {
    it(`${perm}: allowed with it`, async () => {
      const { s } = await userWith([...PERMISSIONS]);
      await ops[perm](s);
    });
    it(`${perm}: refused without it, nothing changed`, async () => {
      // Overwrite needs upload as well; keep everything but the one under test.
      const { s, home } = await userWith(PERMISSIONS.filter((p) => p !== perm));
      await assert.rejects(ops[perm](s), denied);
      assert.equal(readFileSync(join(home, 'file.txt'), 'utf8'), 'hello');
      assert.ok(!existsSync(join(home, 'new.txt')) && !existsSync(join(home, 'made')) && !existsSync(join(home, 'link')));
      assert.ok(existsSync(join(home, 'empty')));
    });
  }

  it('effects are real: chmod sets the mode, chtimes the mtime', async () => {
    const { s, home } = await userWith([...PERMISSIONS]);
    await s.chmod('file.txt', 0o640);
    await s.setTimes('file.txt', new Date('2020-01-02T03:04:05Z'));
    const info = await s.stat('file.txt');
    assert.equal(info.mode & 0o777, 0o640);
    assert.equal(info.mtime.toISOString(), '2020-01-02T03:04:05.000Z');
    assert.ok(existsSync(join(home, 'file.txt')));
  });

  it('rename over an existing file needs overwrite too', async () => {
    const { s } = await userWith(PERMISSIONS.filter((p) => p !== 'overwrite'));
    await writeFile(s, 'other.txt', 'o');
    await assert.rejects(s.rename('other.txt', 'file.txt', 'replace'), denied);
  });

  it('denials are audited with the operation and path', async () => {
    const { s } = await userWith(['list']);
    await assert.rejects(s.mkdir('nope'), denied);
    const lines = await world.auditLines();
    assert.ok(lines.some((l) => l.event === 'denied' && l.operation === 'mkdir' && l.path === '/nope' && l.reason === 'permission'));
  });
});

describe('per-directory overrides', () => {
  let world: World;
  let s: Session;
  let home: string;
  before(async () => {
    world = await World.open();
    // A drop box: the home is closed, /incoming takes new files and nothing else.
    const user = await world.addUser('drop', { permissions: [] });
    await world.services.users.setDirPermissions(user.id, '/incoming', ['upload']);
    await world.services.users.setDirPermissions(user.id, '/public', ['list', 'download']);
    home = world.home('drop');
    mkdirSync(join(home, 'incoming'));
    mkdirSync(join(home, 'public'));
    writeFileSync(join(home, 'public/readme.txt'), 'read me');
    writeFileSync(join(home, 'incoming/earlier.txt'), 'someone else');
    s = await world.session('drop');
  });
  after(() => world.close());

  it('drop box: can write a new file', async () => {
    await writeFile(s, '/incoming/report.pdf', 'pdf bytes');
    assert.equal(readFileSync(join(home, 'incoming/report.pdf'), 'utf8'), 'pdf bytes');
  });
  it('drop box: cannot list', async () => {
    await assert.rejects(collect(s.list('/incoming')), denied);
  });
  it('drop box: cannot read, even its own upload', async () => {
    await assert.rejects(readFile(s, '/incoming/report.pdf'), denied);
  });
  it('drop box: cannot overwrite', async () => {
    await assert.rejects(writeFile(s, '/incoming/earlier.txt', 'replaced'), denied);
    assert.equal(readFileSync(join(home, 'incoming/earlier.txt'), 'utf8'), 'someone else');
  });
  it('drop box: cannot delete or rename', async () => {
    await assert.rejects(s.remove('/incoming/earlier.txt'), denied);
    await assert.rejects(s.rename('/incoming/earlier.txt', '/incoming/x', 'replace'), denied);
  });
  it('drop box: cannot probe whether a file exists', async () => {
    await assert.rejects(s.stat('/incoming/earlier.txt'), denied);
    await assert.rejects(s.stat('/incoming/no-such'), denied);
  });
  it('drop box: may not resume, append to or reopen an existing file (that would tell it exists, and its size)', async () => {
    await writeFile(s, '/incoming/big.bin', 'part1');
    for (const options of [{ offset: 5 }, { offset: 2 }, { append: true }, { offset: 0, truncate: false }, { mustExist: true, truncate: true }]) {
      await assert.rejects(writeFile(s, '/incoming/big.bin', '+part2', options), denied, JSON.stringify(options));
    }
    assert.equal(readFileSync(join(home, 'incoming/big.bin'), 'utf8'), 'part1');
    // A missing name gets the very same refusal for a resume.
    await assert.rejects(writeFile(s, '/incoming/never.bin', '+part2', { offset: 5 }), denied);
    // Appending to a new name is just an upload.
    await writeFile(s, '/incoming/appended.bin', 'new', { append: true });
    assert.equal(readFileSync(join(home, 'incoming/appended.bin'), 'utf8'), 'new');
  });
  it('overrides are inherited by subdirectories; the closed home stays closed', async () => {
    await assert.rejects(collect(s.list('/')), denied);
    await assert.rejects(writeFile(s, '/top.txt', 'x'), denied);
    assert.equal(await readFile(s, '/public/readme.txt'), 'read me');
    assert.deepEqual((await collect(s.list('/public'))).map((f) => f.name), ['readme.txt']);
    await assert.rejects(writeFile(s, '/public/x.txt', 'x'), denied);
  });
  it('a symlink into the drop box tells no more than the drop box itself', async () => {
    // Planted in the readable /public: every probe through it passes the drop box, and gets one answer.
    symlinkSync('../incoming', join(home, 'public/in-link'));
    mkdirSync(join(home, 'incoming/sub'));
    const answers = async (path: string) => {
      const out: string[] = [];
      for (const probe of [() => s.stat(path), () => s.stat(`${path}/x`), () => s.readlink(path), () => s.space(path), () => readFile(s, path)]) {
        out.push(await probe().then(() => 'ok', (e: unknown) => (e instanceof SluiceError ? `${e.kind} ${e.message}` : String(e))));
      }
      return out;
    };
    const file = await answers('/public/in-link/earlier.txt');
    assert.deepEqual(await answers('/public/in-link/sub'), file);
    assert.deepEqual(await answers('/public/in-link/no-such'), file);
    assert.ok(file.every((a) => a === 'permission-denied Permission denied'), file.join());
    assert.equal(await s.realpath('/public/in-link/sub/x'), '/public/in-link/sub/x', 'the path as named, not resolved');
    assert.equal(await s.realpath('/public/in-link/earlier.txt/x'), '/public/in-link/earlier.txt/x');
  });
  it('a symlink cannot carry a write into a read-only directory', async () => {
    symlinkSync('../public', join(home, 'incoming/pub'));
    await assert.rejects(writeFile(s, '/incoming/pub/sneaky.txt', 'x'), denied);
    assert.ok(!existsSync(join(home, 'public/sneaky.txt')));
  });
});
