import assert from 'node:assert/strict';
import { lstatSync, promises as fsp, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { sftpWithEveryRight } from './helpers/in-process.js';
import { call } from './helpers/ssh.js';

/*
 * lsetstat@openssh.com changes a name's own attributes, never those of what a
 * symlink there leads to. Found by the paths review: it looked at the name's
 * type, then changed it through a path walk that follows a final symlink, so
 * a symlink put in its place between the two (another session of the same
 * user, racing) had its target changed: a file other than the one looked at.
 * The race is made certain here: right after the server's first look at the
 * name (an lstat, or an open), the file is moved away and a symlink to
 * another file takes its name. The change must land on the file looked at.
 */
describe('lsetstat acts on the node it looked at, whatever takes its name meanwhile', () => {
  let sftp: ssh2.SFTPWrapper;
  let home: string;
  let close: () => Promise<void>;

  before(async () => {
    ({ sftp, home, close } = await sftpWithEveryRight('linker'));
  });
  after(() => close());

  /**
   * The first fs.promises.lstat or open of a path ending in `/${name}` is let
   * through, then `meanwhile` runs before its answer is given; later calls go
   * straight through. Returns whether it ran, and the restore.
   */
  function afterFirstLook(name: string, meanwhile: () => void) {
    const real = { lstat: fsp.lstat, open: fsp.open };
    let ran = false;
    const hooked = <K extends keyof typeof real>(key: K) =>
      async (...args: unknown[]) => {
        const result = await (real[key] as (...a: unknown[]) => Promise<unknown>)(...args);
        if (!ran && String(args[0]).endsWith(`/${name}`)) {
          ran = true;
          meanwhile();
        }
        return result;
      };
    Object.assign(fsp, { lstat: hooked('lstat'), open: hooked('open') });
    return { ran: () => ran, restore: () => Object.assign(fsp, real) };
  }

  /** `name` a file, `victim` another; the swap moves `name` to `moved` and links `name` to `victim`. */
  function swapSetUp(name: string) {
    const [file, moved, victim] = [name, `${name}.moved`, `${name}.victim`].map((n) => join(home, n)) as [string, string, string];
    writeFileSync(file, 'looked at');
    writeFileSync(victim, 'another file');
    const when = new Date('2001-02-03T04:05:06Z');
    return {
      file,
      moved,
      victim,
      when,
      swap: () => {
        renameSync(file, moved);
        symlinkSync(`${name}.victim`, file);
      },
    };
  }

  it('a mode change lands on the file looked at, not on the target of a symlink swapped in', async () => {
    const { moved, victim, swap } = swapSetUp('mode.txt');
    const before = statSync(victim).mode & 0o777;
    const hook = afterFirstLook('mode.txt', swap);
    try {
      await call((cb) => sftp.ext_openssh_lsetstat('/mode.txt', { mode: 0o600 }, cb));
    } finally {
      hook.restore();
    }
    assert.ok(hook.ran(), 'the name was swapped after the first look');
    assert.equal(statSync(victim).mode & 0o777, before, 'the symlink target kept its mode');
    assert.equal(statSync(moved).mode & 0o777, 0o600, 'the file looked at was changed');
    assert.ok(lstatSync(join(home, 'mode.txt')).isSymbolicLink());
  });

  it('a time change lands on the file looked at, not on the target of a symlink swapped in', async () => {
    const { moved, victim, when, swap } = swapSetUp('times.txt');
    const before = statSync(victim).mtimeMs;
    const hook = afterFirstLook('times.txt', swap);
    try {
      await call((cb) => sftp.ext_openssh_lsetstat('/times.txt', { atime: when, mtime: when }, cb));
    } finally {
      hook.restore();
    }
    assert.ok(hook.ran(), 'the name was swapped after the first look');
    assert.equal(statSync(victim).mtimeMs, before, 'the symlink target kept its time');
    assert.equal(statSync(moved).mtimeMs, when.getTime(), 'the file looked at was changed');
  });

  it('a symlink itself is refused, and its target left alone', async () => {
    writeFileSync(join(home, 'target.txt'), 'x');
    symlinkSync('target.txt', join(home, 'link.txt'));
    await assert.rejects(call((cb) => sftp.ext_openssh_lsetstat('/link.txt', { mode: 0o600 }, cb)), /symlink itself/);
    assert.notEqual(statSync(join(home, 'target.txt')).mode & 0o777, 0o600);
  });
});
