import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, promises as fsp, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { LedgerHandle } from '../src/session/quota.js';
import { InProcessServer } from './helpers/in-process.js';
import { diskUsage, KiB, persistedUsage } from './helpers/quota.js';
import { call, sftpOf, sshConnect } from './helpers/ssh.js';

/**
 * A removal that another session's removal of the same file beat. Found by a
 * review: an upload's end (or a rename) that replaced a file counted it freed
 * when the file had no name left after its act, though another session's
 * REMOVE had taken that name in between, and given the bytes back already:
 * they came off the usage twice (with workers, 4 races in 120 won, and the
 * user then stored 26 MiB under a 16 MiB quota). The race is made certain
 * here: the replacing act waits at the file's in-place lock until the other
 * session's REMOVE is done.
 */
describe('a file removed by another session just before an upload or a rename replaces it', () => {
  const PASSWORD = 'race password 1';
  let srv: InProcessServer;
  const clients: ssh2.Client[] = [];
  let one: ssh2.SFTPWrapper;
  let two: ssh2.SFTPWrapper;
  let tightOne: ssh2.SFTPWrapper;
  let tightTwo: ssh2.SFTPWrapper;
  let linkOne: ssh2.SFTPWrapper;
  let linkTwo: ssh2.SFTPWrapper;
  let emptyOne: ssh2.SFTPWrapper;
  let emptyTwo: ssh2.SFTPWrapper;
  // The locks a removal takes: of a node's names (quota.ts, namesLocked), which were in-place locks before.
  const LOCKS = ['lockNames', 'lockInPlace'] as const;
  const originals = { lockNames: LedgerHandle.prototype.lockNames, lockInPlace: LedgerHandle.prototype.lockInPlace };
  const restoreLocks = () => Object.assign(LedgerHandle.prototype, originals);
  /** Each lock method, wrapped: `wrap` gets the call of the original. */
  const patchLocks = (wrap: (take: () => Promise<unknown>) => Promise<unknown>) => {
    for (const name of LOCKS) {
      const real = originals[name] as ((this: LedgerHandle, key: string) => Promise<unknown>) | undefined;
      if (!real) continue;
      (LedgerHandle.prototype as unknown as Record<string, unknown>)[name] = function (this: LedgerHandle, key: string) {
        return wrap(() => real.call(this, key));
      };
    }
  };

  before(async () => {
    srv = await InProcessServer.start();
    await srv.base.admin.add({ name: 'racer', password: PASSWORD, keys: [], quotaBytes: 4 * 1024 * KiB, quotaFiles: 100 });
    await srv.base.admin.add({ name: 'tight', password: PASSWORD, keys: [], quotaBytes: 64 * KiB, quotaFiles: 100 });
    const linking = ['list', 'download', 'upload', 'overwrite', 'delete', 'rename', 'symlink'] as const;
    await srv.base.admin.add({ name: 'linker', password: PASSWORD, keys: [], quotaBytes: 4 * 1024 * KiB, quotaFiles: 100, permissions: [...linking] });
    await srv.base.admin.add({ name: 'empty', password: PASSWORD, keys: [], quotaBytes: 4 * 1024 * KiB, quotaFiles: 100 });
    for (let i = 0; i < 2; i++) clients.push(await sshConnect({ port: srv.sftpPort, username: 'racer', password: PASSWORD }));
    for (let i = 0; i < 2; i++) clients.push(await sshConnect({ port: srv.sftpPort, username: 'tight', password: PASSWORD }));
    for (let i = 0; i < 2; i++) clients.push(await sshConnect({ port: srv.sftpPort, username: 'linker', password: PASSWORD }));
    for (let i = 0; i < 2; i++) clients.push(await sshConnect({ port: srv.sftpPort, username: 'empty', password: PASSWORD }));
    [one, two, tightOne, tightTwo, linkOne, linkTwo, emptyOne, emptyTwo] = (await Promise.all(clients.map((c) => sftpOf(c)))) as ssh2.SFTPWrapper[] as [
      ssh2.SFTPWrapper, ssh2.SFTPWrapper, ssh2.SFTPWrapper, ssh2.SFTPWrapper, ssh2.SFTPWrapper, ssh2.SFTPWrapper, ssh2.SFTPWrapper, ssh2.SFTPWrapper,
    ];
  });
  after(async () => {
    restoreLocks();
    clients.forEach((c) => c.end());
    await srv.close();
  });

  /** The next lock a removal takes waits until `meanwhile` is done; locks taken by `meanwhile` itself go through. */
  const nextLockWaitsFor = (meanwhile: () => Promise<void>) => {
    let armed = true;
    let done: Promise<void> = Promise.resolve();
    patchLocks(async (take) => {
      if (armed) {
        armed = false;
        done = meanwhile();
        await done;
      }
      return take();
    });
    return () => done;
  };

  /** The next lock a removal takes, once taken, is held until `meanwhile` is done. */
  const nextLockHeldDuring = (meanwhile: () => Promise<unknown>) => {
    let armed = true;
    let done: Promise<unknown> | null = null;
    patchLocks(async (take) => {
      const got = await take();
      // lockNames says whether it took the lock; lockInPlace throws when it did not.
      if (armed && (got === undefined || got === 'locked')) {
        armed = false;
        done = meanwhile();
        await done.catch(() => undefined);
      }
      return got;
    });
    return () => done;
  };

  /** The usage as stored, once the deferred writes are in, against what the home holds. */
  const usage = async (user = 'racer') => {
    await new Promise((resolve) => setTimeout(resolve, 300));
    return { stored: persistedUsage(srv, user), disk: diskUsage(join(srv.dir, 'data', 'homes', user)) };
  };

  /**
   * Calls of fs.promises[name] whose path argument `which` ends with `suffix` run `meanwhile` first (once;
   * `after`: right after the call); others go through.
   */
  const hookFs = <K extends 'rename' | 'unlink' | 'link'>(name: K, which: 0 | 1, suffix: string, meanwhile: () => Promise<unknown>, after = false) => {
    const real = fsp[name] as (...args: unknown[]) => Promise<void>;
    let ran: Promise<unknown> | null = null;
    (fsp as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
      if (ran !== null || !String(args[which]).endsWith(suffix)) return real(...args);
      let result: Promise<void> | null = null;
      if (after) result = real(...args);
      ran = (result ?? Promise.resolve()).then(() => meanwhile()).catch((err: unknown) => err);
      await ran;
      return result ?? real(...args);
    };
    return { ran: () => ran, restore: () => void ((fsp as unknown as Record<string, unknown>)[name] = real) };
  };

  /**
   * How far the stored usage is above what the home holds (names, bytes): a case's race must not lower it (the
   * case before left a name linked outside the server, which the usage never counted).
   */
  const margin = async (user = 'racer') => {
    const { stored, disk } = await usage(user);
    return { files: stored.files - disk.files, bytes: stored.bytes - disk.bytes };
  };
  const assertNotLowered = (was: { files: number; bytes: number }, now: { files: number; bytes: number }) =>
    assert.ok(now.files >= was.files && now.bytes >= was.bytes, `the usage fell below what the home holds: ${JSON.stringify(was)} above it before, ${JSON.stringify(now)} after`);

  /** `p`, or undefined once `ms` passed: a hook that waits for a request the fix makes wait for the hooked act. */
  const within = (p: Promise<unknown>, ms: number) => Promise.race([p, new Promise((resolve) => setTimeout(resolve, ms))]);

  it('an upload over it: its bytes come off the usage once', async () => {
    await call((cb) => one.writeFile('/victim', randomBytes(1024 * KiB), cb));
    const handle = await call<Buffer>((cb) => one.open('/victim', 'w', cb));
    await call((cb) => one.write(handle, Buffer.alloc(1000, 1), 0, 1000, 0, cb));
    const removed = nextLockWaitsFor(() => call((cb) => two.unlink('/victim', cb)));
    await call((cb) => one.close(handle, cb));
    await removed();
    const { stored, disk } = await usage();
    assert.deepEqual([disk.bytes, disk.files], [1000, 1], 'the upload made the name again');
    assert.deepEqual(stored, { bytes: disk.bytes, files: disk.files }, 'the usage is what the home holds');
    await call((cb) => one.unlink('/victim', cb));
  });

  it('a rename over it: its bytes come off the usage once', async () => {
    await call((cb) => one.writeFile('/victim', randomBytes(1024 * KiB), cb));
    await call((cb) => one.writeFile('/small', Buffer.alloc(500, 2), cb));
    const removed = nextLockWaitsFor(() => call((cb) => two.unlink('/victim', cb)));
    // posix-rename@openssh.com: SFTP v3's RENAME refuses an existing target.
    await call((cb) => one.ext_openssh_rename('/small', '/victim', cb));
    await removed();
    const { stored, disk } = await usage();
    assert.deepEqual([disk.bytes, disk.files], [500, 1]);
    assert.deepEqual(stored, { bytes: disk.bytes, files: disk.files }, 'the usage is what the home holds');
  });

  it('two renames crossing (A over B, B over A): one wins at once, the other is told its source changed', async () => {
    // Each rename holds its source's lock and takes its target's to replace it. Both held theirs before either
    // took the other's (made certain here: the first two locks taken wait for each other), and each waited for
    // the other's, 2 s, and both failed. The one whose target's lock is held now lets go of its own and begins
    // again, so the other goes through.
    await call((cb) => one.writeFile('/cross-a', Buffer.alloc(300, 1), cb));
    await call((cb) => one.writeFile('/cross-b', Buffer.alloc(200, 2), cb));
    let arrive: () => void = () => undefined;
    const bothHold = new Promise<void>((resolve) => {
      let held = 0;
      arrive = () => void (++held === 2 && resolve());
    });
    let taken = 0;
    patchLocks(async (take) => {
      const got = await take();
      if (++taken <= 2) {
        arrive();
        await bothHold;
      }
      return got;
    });
    const started = Date.now();
    let results: PromiseSettledResult<unknown>[];
    try {
      results = await Promise.allSettled([
        call((cb) => one.ext_openssh_rename('/cross-a', '/cross-b', cb)),
        call((cb) => two.ext_openssh_rename('/cross-b', '/cross-a', cb)),
      ]);
    } finally {
      restoreLocks();
    }
    const took = Date.now() - started;
    const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    assert.equal(failed.length, 1, `one rename goes through: ${JSON.stringify(results.map((r) => (r.status === 'rejected' ? String(r.reason) : 'ok')))}`);
    assert.match(String(failed[0]?.reason), /changed while it was renamed/);
    assert.ok(took < 1000, `no wait for the other's lock to run out: ${took} ms`);
    const { stored, disk } = await usage();
    assert.deepEqual(stored, { bytes: disk.bytes, files: disk.files }, 'the usage is what the home holds');
    const home = join(srv.dir, 'data', 'homes', 'racer');
    const left = ['cross-a', 'cross-b'].filter((n) => existsSync(join(home, n)));
    assert.equal(left.length, 1, 'one of the two names is left');
    await call((cb) => one.unlink(`/${left[0]}`, cb));
  });

  it('a rename over an empty directory another session removes meanwhile: the name comes off the usage once', async () => {
    // Found by a review: rmdir took no lock, so one between the rename's look at the directory it replaces and
    // its act was counted by both, a name more off the usage for every such race. Made certain here: the
    // other session's RMDIR runs just before the rename(2) itself.
    await call((cb) => one.mkdir('/moving', cb));
    await call((cb) => one.mkdir('/target', cb));
    const rename = fsp.rename;
    let rmdir: Promise<unknown> | null = null;
    fsp.rename = async (from, to) => {
      if (String(to).endsWith('/target') && rmdir === null) {
        rmdir = call((cb) => two.rmdir('/target', cb)).catch((err: Error) => err);
        await rmdir;
      }
      return rename(from, to);
    };
    try {
      await call((cb) => one.ext_openssh_rename('/moving', '/target', cb));
    } finally {
      fsp.rename = rename;
    }
    assert.ok(rmdir, 'the rmdir ran in the rename');
    const { stored, disk } = await usage();
    const home = join(srv.dir, 'data', 'homes', 'racer');
    assert.deepEqual([existsSync(join(home, 'moving')), existsSync(join(home, 'target'))], [false, true], 'moved');
    assert.deepEqual(stored, { bytes: disk.bytes, files: disk.files }, 'the usage is what the home holds');
    await call((cb) => one.rmdir('/target', cb));
  });

  it('a rename whose source name another session gives a file written in place before the rename locks: refused', async () => {
    // Found by a review: the rename locked the file its resolve had looked at, then moved whatever had the name
    // by then; a file another session put there and appends to got a second name (or was moved, its record then
    // naming its old name). The source is looked at again under the lock.
    await call((cb) => one.writeFile('/a', Buffer.alloc(300, 1), cb));
    await call((cb) => one.writeFile('/b', Buffer.alloc(200, 2), cb));
    let handle: Buffer | null = null;
    const waited = nextLockWaitsFor(async () => {
      await call((cb) => two.ext_openssh_rename('/b', '/a', cb));
      handle = await call<Buffer>((cb) => two.open('/a', 'a', cb));
      await call((cb) => two.write(handle as Buffer, Buffer.alloc(50, 3), 0, 50, 0, cb));
    });
    const renamed = await call((cb) => one.rename('/a', '/moved', cb)).catch((err: Error) => err);
    await waited();
    assert.ok(handle, 'the other session appends to the file now under the name');
    await call((cb) => two.close(handle as unknown as Buffer, cb));
    assert.match(String(renamed), /changed while it was renamed/);
    const home = join(srv.dir, 'data', 'homes', 'racer');
    assert.deepEqual([existsSync(join(home, 'a')), existsSync(join(home, 'moved'))], [true, false]);
    assert.equal(statSync(join(home, 'a')).nlink, 1, 'one name');
    await call((cb) => one.unlink('/a', cb));
  });

  it('two names of one file removed at once by two sessions: neither refuses the other', async () => {
    // Found by a review of the fix above: locking every file's removal made two removals of two names of one
    // file refuse each other ("being written by another transfer"). A file of several names takes no lock.
    await call((cb) => one.writeFile('/linked', Buffer.alloc(700, 3), cb));
    const home = join(srv.dir, 'data', 'homes', 'racer');
    linkSync(join(home, 'linked'), join(home, 'second'));
    let other: Promise<unknown> | null = null;
    // Held while the other starts (it waits for the lock, a few system calls' change of the file's names).
    const during = nextLockHeldDuring(() => within((other = call((cb) => two.unlink('/second', cb))), 300));
    await call((cb) => one.unlink('/linked', cb));
    restoreLocks();
    await (during() ?? (other = call((cb) => two.unlink('/second', cb))));
    await other;
    assert.deepEqual([existsSync(join(home, 'linked')), existsSync(join(home, 'second'))], [false, false], 'both names removed');
  });

  it("a rename over a file another session is moving away: the move's passing second name is not taken for the rename's act", async () => {
    // Found by a review: a rename onto a free name links the file there and then unlinks its old name, taking no
    // lock, so the file had two names for a moment. A rename over that file that counted its links then (under
    // the file's lock) and acted after the move's unlink landed on a free name, removed nothing, yet saw the
    // count fall: a name off the file quota for every race won. Made certain here: the move links, the rename
    // counts, the move unlinks, the rename acts.
    await call((cb) => one.writeFile('/t', Buffer.alloc(1000, 1), cb));
    await call((cb) => one.writeFile('/s', Buffer.alloc(300, 2), cb));
    const was = await margin();
    let moved: Promise<unknown> = Promise.resolve();
    // The move waits at its unlink of /t until the rename's act is about to run, or a while: the rename that finds
    // the move holding /t's lock lets go and begins again (see moveUnderLock), and acts only once the move is done.
    let actNow!: () => void;
    const acting = new Promise<void>((resolve) => (actNow = resolve));
    const moverUnlink = hookFs('unlink', 0, '/t', () => within(acting, 500));
    const renameAct = hookFs('rename', 1, '/t', async () => {
      actNow();
      await within(moved, 1000);
    });
    const locked = nextLockHeldDuring(async () => {
      moved = call((cb) => two.rename('/t', '/u', cb)).catch((err: Error) => err);
      // Long enough for the move to link /u (an SFTP round trip), not for anything the fix makes it wait for.
      await within(moved, 300);
    });
    try {
      await call((cb) => one.ext_openssh_rename('/s', '/t', cb)).catch((err: Error) => err);
      await locked();
      await moved;
    } finally {
      restoreLocks();
      moverUnlink.restore();
      renameAct.restore();
    }
    // Both went through, the rename after the move: over the name the move had freed (before, it waited at the
    // lock in place), or onto it, free, once begun again.
    const home = join(srv.dir, 'data', 'homes', 'racer');
    assert.deepEqual(['s', 't', 'u'].map((n) => existsSync(join(home, n))), [false, true, true], 'renamed and moved');
    assert.deepEqual([statSync(join(home, 't')).size, statSync(join(home, 'u')).size], [300, 1000], 'each file where it went');
    assertNotLowered(was, await margin());
    for (const name of ['/s', '/t', '/u']) await call((cb) => one.unlink(name, cb)).catch(() => undefined);
  });

  it('a rename over a name of a linked file another session removes meanwhile: the name comes off the usage once', async () => {
    // Found by a review: a file of several names took no lock to be removed, so a DELE of its name between a
    // rename's count of its links and the act left the rename on a free name; both counted a name removed.
    await call((cb) => one.writeFile('/t', Buffer.alloc(700, 3), cb));
    await call((cb) => one.writeFile('/s', Buffer.alloc(200, 4), cb));
    const home = join(srv.dir, 'data', 'homes', 'racer');
    linkSync(join(home, 't'), join(home, 'x'));
    const was = await margin();
    let removed: Promise<unknown> = Promise.resolve();
    const act = hookFs('rename', 1, '/t', () => {
      removed = call((cb) => two.unlink('/t', cb)).catch((err: Error) => err);
      return within(removed, 500);
    });
    try {
      await call((cb) => one.ext_openssh_rename('/s', '/t', cb));
      await removed;
    } finally {
      act.restore();
    }
    assert.ok(act.ran(), 'the removal ran in the rename');
    assertNotLowered(was, await margin());
    for (const name of ['/s', '/t', '/x']) await call((cb) => one.unlink(name, cb)).catch(() => undefined);
  });

  it('a new file written in place over the quota cannot be moved away as its upload gives it up: its name stays counted', async () => {
    // Found by a review: the upload removes the name it made when it still names its file, but a move between
    // that look and the unlink left the unlink nothing to remove; the file, under its new name, was never counted.
    // A file written in place cannot be moved until its write ends (see moveUnderLock).
    const handle = await call<Buffer>((cb) => tightOne.open('/n', 'a', cb));
    await call((cb) => tightOne.write(handle, randomBytes(100 * KiB), 0, 100 * KiB, 0, cb)).catch(() => undefined);
    const move = hookFs('unlink', 0, '/n', () => call((cb) => tightTwo.rename('/n', '/m', cb)));
    try {
      await call((cb) => tightOne.close(handle, cb)).catch(() => undefined);
    } finally {
      move.restore();
    }
    assert.match(String(await move.ran()), /being written by another transfer/, 'the move waits for the write');
    assert.equal(existsSync(join(srv.dir, 'data', 'homes', 'tight', 'm')), false);
    assertNotLowered({ files: 0, bytes: 0 }, await margin('tight'));
  });

  it('a hard link whose source another session moves and replaces as it links: the move waits, and the link stays counted', async () => {
    // Found by a review: a hard link made by the source's name checks it names the file looked at, and removes
    // it if not; that unlink failed, unseen, when another session had moved the new link away just before, and
    // the link was never counted. Moves of the file now wait for the link's lock: the link is of the file looked at.
    await call((cb) => linkOne.writeFile('/src', Buffer.alloc(100, 1), cb));
    await call((cb) => linkOne.writeFile('/x', Buffer.alloc(50, 2), cb));
    await call((cb) => linkOne.writeFile('/g', Buffer.alloc(70, 3), cb));
    const was = await margin('linker');
    // Before the link: the source's file to go (over /x), another to take its name.
    let swapped: Promise<unknown> = Promise.resolve();
    const swap = hookFs('link', 1, '/dst', () => {
      swapped = (async () => {
        await call((cb) => linkTwo.ext_openssh_rename('/src', '/x', cb));
        await call((cb) => linkTwo.rename('/g', '/src', cb));
      })().catch((err: unknown) => err);
      return within(swapped, 300);
    });
    try {
      await call((cb) => linkOne.ext_openssh_hardlink('/src', '/dst', cb));
      assert.equal((await swapped) instanceof Error, false, 'the other session moved the file once the link was made');
    } finally {
      swap.restore();
    }
    const home = join(srv.dir, 'data', 'homes', 'linker');
    assert.deepEqual(['src', 'x', 'dst', 'g'].map((n) => existsSync(join(home, n))), [true, true, true, false]);
    assert.equal(statSync(join(home, 'dst')).ino, statSync(join(home, 'x')).ino, 'the link is of the file looked at');
    assertNotLowered(was, await margin('linker'));
  });

  it('a hard link whose source name another session gives another file before the link locks: refused, and no name stays on the usage', async () => {
    // Found by a review: a hard link locks the file its look found and links by the source's name, which was not
    // looked at again under that lock. Another file put under the name in between (a rename over it) was linked
    // without its own lock, so a removal of that file's other name, which counts its links under that lock, counted
    // them before the link and acted after it: no name off for its act, and the link, not of the file looked at, was
    // refused and left in place (that file had but the one name then): a name on the usage for good. Made certain
    // here: the link's lock waits for the rename and for the removal to reach its unlink, which waits for the link.
    await call((cb) => linkOne.writeFile('/hsrc', Buffer.alloc(100, 1), cb));
    await call((cb) => linkOne.writeFile('/hg', Buffer.alloc(70, 2), cb));
    const was = await margin('linker');
    let linkMade!: () => void;
    const linked = new Promise<void>((resolve) => (linkMade = resolve));
    let atUnlink!: () => void;
    const reached = new Promise<void>((resolve) => (atUnlink = resolve));
    const unlinkWaits = hookFs('unlink', 0, '/hsrc', () => {
      atUnlink();
      return within(linked, 1000);
    });
    const linkTells = hookFs('link', 1, '/hdst', async () => linkMade(), true);
    let removed: Promise<unknown> = Promise.resolve();
    let renamed: unknown = null;
    nextLockWaitsFor(async () => {
      renamed = await call((cb) => linkTwo.ext_openssh_rename('/hg', '/hsrc', cb)).catch((err: Error) => err);
      removed = call((cb) => linkTwo.unlink('/hsrc', cb)).catch((err: Error) => err);
      await within(reached, 1000);
    });
    let link: unknown;
    try {
      link = await call((cb) => linkOne.ext_openssh_hardlink('/hsrc', '/hdst', cb)).catch((err: Error) => err);
      await removed;
    } finally {
      restoreLocks();
      unlinkWaits.restore();
      linkTells.restore();
    }
    assert.equal(renamed instanceof Error, false, 'the other session renamed over the source');
    assert.equal((await removed) instanceof Error, false, 'the other session removed the source');
    assert.match(String(link), /changed while it was linked/);
    assertNotLowered(was, await margin('linker'));
    assert.deepEqual(await margin('linker'), was, 'the usage is as far from what the home holds as before');
    for (const name of ['/hsrc', '/hg', '/hdst']) await call((cb) => linkOne.unlink(name, cb)).catch(() => undefined);
  });

  it('an rmdir whose name another session gave another directory before it locked, a rename over that one meanwhile: the name comes off once', async () => {
    // Found by a review: an RMDIR locks the directory it looked at and removes whatever the name leads to then. Another
    // directory moved onto the name in between was removed without its lock, so a rename over that directory, which
    // counts under that lock, counted it before the rmdir and acted after it, onto a name by then free: both took the
    // directory's name off, one more than left the disk. Made certain here: the rmdir's lock waits for the moves; its
    // rmdir(2) for the rename to have counted, whose rename(2) waits for the rmdir(2).
    await call((cb) => one.mkdir('/rn', cb));
    await call((cb) => one.mkdir('/rd2', cb));
    await call((cb) => one.mkdir('/rs', cb));
    const was = await margin();
    const realRmdir = fsp.rmdir;
    const realRename = fsp.rename;
    let renamed: Promise<unknown> = Promise.resolve();
    let atRename!: () => void;
    const reached = new Promise<void>((resolve) => (atRename = resolve));
    let rmdirDone!: () => void;
    const removedThere = new Promise<void>((resolve) => (rmdirDone = resolve));
    let moved: unknown = null;
    nextLockWaitsFor(async () => {
      moved = await call((cb) => two.rename('/rn', '/raway', cb))
        .then(() => call((cb) => two.rename('/rd2', '/rn', cb)))
        .catch((err: Error) => err);
      (fsp as { rename: typeof realRename }).rename = async (from, to) => {
        if (String(from).endsWith('/rs') && String(to).endsWith('/rn')) {
          atRename();
          await within(removedThere, 1000);
        }
        return realRename(from, to);
      };
      (fsp as { rmdir: typeof realRmdir }).rmdir = async (path, options) => {
        if (String(path).endsWith('/rn')) {
          renamed = call((cb) => two.ext_openssh_rename('/rs', '/rn', cb)).catch((err: Error) => err);
          await within(reached, 1000);
          try {
            return await realRmdir(path, options);
          } finally {
            rmdirDone();
          }
        }
        return realRmdir(path, options);
      };
    });
    let removed: unknown;
    try {
      removed = await call((cb) => one.rmdir('/rn', cb)).catch((err: Error) => err);
      await renamed;
    } finally {
      restoreLocks();
      Object.assign(fsp, { rmdir: realRmdir, rename: realRename });
    }
    assert.equal(moved instanceof Error, false, 'the other session moved the directories');
    assert.equal(removed instanceof Error, false, 'the rmdir removed a directory');
    assert.equal((await renamed) instanceof Error, false, 'the rename went through');
    const home = join(srv.dir, 'data', 'homes', 'racer');
    assert.deepEqual(['rn', 'raway', 'rd2', 'rs'].map((n) => existsSync(join(home, n))), [true, true, false, false]);
    assertNotLowered(was, await margin());
    assert.deepEqual(await margin(), was, 'the usage is as far from what the home holds as before');
    for (const name of ['/rn', '/raway']) await call((cb) => one.rmdir(name, cb)).catch(() => undefined);
  });

  it('a rename over a directory another session moves away and empties of a subdirectory meanwhile: no name comes off for it', async () => {
    // Found by a review: a directory's link count is its subdirectories', so a directory moved away (a rename takes
    // no lock of it) and rid of a subdirectory (whose RMDIR counted itself) between a rename's count and its act,
    // which then found the name free, made the count fall as if the act had removed it: a name off each time.
    await call((cb) => one.mkdir('/s', cb));
    await call((cb) => one.mkdir('/t', cb));
    await call((cb) => one.mkdir('/t/sub', cb));
    const was = await margin();
    const act = hookFs('rename', 1, '/t', async () => {
      await call((cb) => two.rename('/t', '/u', cb));
      await call((cb) => two.rmdir('/u/sub', cb));
    });
    try {
      await call((cb) => one.ext_openssh_rename('/s', '/t', cb));
    } finally {
      act.restore();
    }
    assert.equal((await act.ran()) instanceof Error, false, 'moved and emptied in the rename');
    const home = join(srv.dir, 'data', 'homes', 'racer');
    assert.deepEqual(['s', 't', 'u', 'u/sub'].map((n) => existsSync(join(home, n))), [false, true, true, false]);
    assertNotLowered(was, await margin());
    for (const name of ['/t', '/u']) await call((cb) => one.rmdir(name, cb)).catch(() => undefined);
  });

  it('a new file another session moves away before the upload in place that made it locks it: refused, and counted where it went', async () => {
    // Found by a review: a rename holds the file's lock only while it acts, so one between the upload's create
    // and its lock left the upload writing a file under another name, its record and hooks naming the old one.
    const was = await margin('tight');
    let moved: unknown = null;
    nextLockWaitsFor(async () => {
      moved = await call((cb) => tightTwo.rename('/made', '/went', cb)).catch((err: Error) => err);
    });
    try {
      await assert.rejects(call<Buffer>((cb) => tightOne.open('/made', 'a', cb)), /changed while it was opened/);
    } finally {
      restoreLocks();
    }
    assert.equal(moved instanceof Error, false, 'the other session moved the new file');
    const home = join(srv.dir, 'data', 'homes', 'tight');
    assert.deepEqual(['made', 'went'].map((n) => existsSync(join(home, n))), [false, true]);
    assertNotLowered(was, await margin('tight'));
    await call((cb) => tightTwo.unlink('/went', cb));
  });

  it('a new file another session opens in place, and cannot move away, before the upload that made it locks it: its name stays counted', async () => {
    // Found by a review: the upload that made a name and could not lock its file (another writer in place had
    // it, or a move of it held the lock) unlinked the name again, and ignored that unlink's failure: the file
    // moved away meanwhile stayed under its new name, never counted. It unlinks it no more: the file is the
    // other writer's (found by test/stress/one-account.ts: unlinked under that writer, whose bytes were then
    // charged with no name on the disk), and the name stays, counted.
    const was = await margin('tight');
    let other: Buffer | null = null;
    let moved: unknown = null;
    nextLockWaitsFor(async () => {
      other = await call<Buffer>((cb) => tightTwo.open('/fresh', 'r+', cb));
      moved = await call((cb) => tightTwo.rename('/fresh', '/away', cb)).catch((err: Error) => err);
    });
    try {
      await assert.rejects(call<Buffer>((cb) => tightOne.open('/fresh', 'a', cb)), /being written by another transfer/);
    } finally {
      restoreLocks();
    }
    assert.ok(other, 'the other session opened the new file in place');
    await call((cb) => tightTwo.close(other as unknown as Buffer, cb));
    const home = join(srv.dir, 'data', 'homes', 'tight');
    // The move is refused while the other session writes the file in place (see moveUnderLock), and the name
    // stays, counted once: the usage moved with the disk.
    assert.match(String(moved), /being written by another transfer/);
    assert.deepEqual(['fresh', 'away'].map((n) => existsSync(join(home, n))), [true, false]);
    assert.deepEqual(await margin('tight'), was);
    await call((cb) => tightTwo.unlink('/fresh', cb));
  });

  it('a new file another session removes as soon as the upload that made it lets go of its lock: the usage is what the home holds', async () => {
    // Found by a review: an upload's end charged its file's bytes and name after letting go of the lock its commit
    // took, a round trip to the primary later with workers (synced), and a removal of the new file could land in
    // between. The usage never goes below zero, so with less on it than the file (an empty home here) the removal
    // took off only what was there, and the charge after it stayed: a whole file on the usage with nothing on the
    // disk. Made certain here: the upload's wait after letting go of its lock lasts until the removal is done.
    const data = randomBytes(200 * KiB);
    const realUnlock = LedgerHandle.prototype.unlockInPlace;
    const realSynced = LedgerHandle.prototype.synced;
    let wentFree = false;
    let removed = null as Promise<unknown> | null;
    LedgerHandle.prototype.unlockInPlace = function (this: LedgerHandle, key: string) {
      realUnlock.call(this, key);
      wentFree = true;
    };
    LedgerHandle.prototype.synced = async function (this: LedgerHandle) {
      if (wentFree && removed === null) {
        removed = call((cb) => emptyTwo.unlink('/new', cb)).catch((err: Error) => err);
        await removed;
      }
      return realSynced.call(this);
    };
    try {
      await call((cb) => emptyOne.writeFile('/new', data, cb));
    } finally {
      Object.assign(LedgerHandle.prototype, { unlockInPlace: realUnlock, synced: realSynced });
    }
    assert.ok(removed, 'the removal ran as the upload let go of its lock');
    assert.equal((await removed) instanceof Error, false, 'the other session removed the new file');
    const { stored, disk } = await usage('empty');
    assert.deepEqual([disk.bytes, disk.files], [0, 0], 'the home is empty');
    assert.deepEqual(stored, { bytes: disk.bytes, files: disk.files }, 'the usage is what the home holds');
  });
});
